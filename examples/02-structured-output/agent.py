"""A recipe extractor: free text in, a validated ``Recipe`` out."""

from __future__ import annotations

from pydantic import BaseModel, ConfigDict, Field

from polos import Agent


# extra="forbid" and no defaults make the schema "strict" in OpenAI's sense, so the model
# is constrained to produce exactly this shape (other schemas are sent non-strict).
class Ingredient(BaseModel):
    model_config = ConfigDict(extra="forbid")

    item: str = Field(description="The ingredient, e.g. 'tomatoes'")
    quantity: str = Field(description="How much, as written, e.g. '1 kg' ('' if not given)")


class Recipe(BaseModel):
    model_config = ConfigDict(extra="forbid")

    title: str
    servings: int = Field(description="How many people it serves")
    total_minutes: int = Field(description="Total time, preparation and cooking, in minutes")
    vegetarian: bool
    ingredients: list[Ingredient]
    steps: list[str] = Field(description="The method, one short instruction per step")


recipe_agent = Agent(
    id="recipe_extractor",
    provider="openai",
    model="gpt-4o-mini",
    system_prompt="Extract the recipe from the user's text. Do not invent anything.",
    # The JSON schema of Recipe is sent to the model (OpenAI structured outputs), and the
    # answer is validated against it: result.result is a Recipe, not a string.
    output_schema=Recipe,
)
