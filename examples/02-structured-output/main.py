"""Extract a recipe from free text and use the typed result."""

import asyncio

from agent import Recipe, recipe_agent

from polos import PolosClient

TEXT = """
Grandma's tomato soup - serves 4, ready in 35 minutes.
You need 1 kg ripe tomatoes, 1 onion, 2 cloves garlic, 2 tbsp olive oil, 500 ml vegetable stock and a handful of basil.
Soften the onion and garlic in the oil. Add the tomatoes and the stock and simmer for 20 minutes. Blend with the basil and season to taste.
"""


async def main() -> None:
    async with PolosClient() as client:
        result = await recipe_agent.run(client, TEXT, timeout=60)

    recipe = result.result  # a Recipe instance, validated: no JSON parsing here
    if not isinstance(recipe, Recipe):
        raise SystemExit(f"expected a Recipe, got {type(recipe).__name__}")
    print(f"{recipe.title}: serves {recipe.servings}, {recipe.total_minutes} min")
    print(f"vegetarian: {'yes' if recipe.vegetarian else 'no'}")
    print(f"ingredients ({len(recipe.ingredients)}):")
    for ingredient in recipe.ingredients:
        print(f"  - {ingredient.quantity or '':>9}  {ingredient.item}")
    print("steps:")
    for number, step in enumerate(recipe.steps, 1):
        print(f"  {number}. {step}")
    print(f"\n{type(recipe).__name__} validated after {result.total_steps} model call(s)")

    if recipe.servings != 4 or len(recipe.ingredients) < 5 or not recipe.steps:
        raise SystemExit(f"the extraction looks wrong: {recipe!r}")


if __name__ == "__main__":
    asyncio.run(main())
