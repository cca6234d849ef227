"""The weather agent and its tools (imported by worker.py, which serves them, and main.py)."""

from __future__ import annotations

from typing import Literal

from polos import Agent, tool

# A stand-in for a weather API, so that the example needs no account and no network.
WEATHER = {
    "paris": {"temp_c": 18, "conditions": "light rain", "humidity": 81},
    "tokyo": {"temp_c": 24, "conditions": "sunny", "humidity": 55},
    "new york": {"temp_c": 12, "conditions": "windy", "humidity": 60},
    "sydney": {"temp_c": 27, "conditions": "clear", "humidity": 48},
}


@tool
def get_weather(city: str, unit: Literal["celsius", "fahrenheit"] = "celsius") -> dict:
    """Current weather of a city: temperature, conditions and humidity."""
    # The docstring above is the description the model reads; the signature becomes the
    # JSON schema of the arguments, and the model's arguments are validated against it.
    name = city.split(",")[0].strip().lower()  # "Paris, France" -> "paris"
    report = WEATHER.get(name)
    if report is None:
        # Returned to the model as the tool's output: it can tell the user, or try again.
        return {"city": city, "error": f"no weather station in {city}"}
    temp = report["temp_c"] if unit == "celsius" else round(report["temp_c"] * 9 / 5 + 32)
    return {
        "city": name.title(),
        "temperature": temp,
        "unit": unit,
        "conditions": report["conditions"],
        "humidity": report["humidity"],
    }


@tool
def list_cities() -> list[str]:
    """The cities that have a weather station."""
    return [name.title() for name in WEATHER]


weather_agent = Agent(
    id="weather_agent",
    provider="openai",
    model="gpt-4o-mini",
    system_prompt=(
        "You are a helpful weather assistant. Use get_weather for current conditions "
        "(one call per city) and answer in one or two friendly sentences."
    ),
    tools=[get_weather, list_cities],
)
