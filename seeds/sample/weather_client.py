"""Client for the (fictional) SkyCast weather HTTP API."""

import json
from urllib.parse import urlencode
from urllib.request import urlopen

BASE_URL = "https://api.skycast.example/v2"


class SkyCastClient:
    """Thin wrapper around the SkyCast REST endpoints. All methods return parsed JSON."""

    def __init__(self, api_key: str, units: str = "metric", timeout: float = 10.0):
        if units not in ("metric", "imperial"):
            raise ValueError("units must be 'metric' or 'imperial'")
        self.api_key = api_key
        self.units = units
        self.timeout = timeout

    def _get(self, path: str, **params) -> dict:
        query = urlencode({"key": self.api_key, "units": self.units, **params})
        with urlopen(f"{BASE_URL}/{path}?{query}", timeout=self.timeout) as response:
            return json.load(response)

    def current(self, city: str, country_code: str | None = None) -> dict:
        """Current conditions: temperature, humidity, wind speed and a short summary."""
        place = f"{city},{country_code}" if country_code else city
        return self._get("current", q=place)

    def forecast(self, city: str, days: int = 3) -> dict:
        """Daily forecast for 1 to 10 days: min/max temperature and chance of rain."""
        if not 1 <= days <= 10:
            raise ValueError("days must be between 1 and 10")
        return self._get("forecast", q=city, days=days)

    def air_quality(self, latitude: float, longitude: float) -> dict:
        """Air quality index and pollutant levels at a coordinate."""
        return self._get("air", lat=latitude, lon=longitude)

    def alerts(self, region: str, severity: str = "moderate") -> dict:
        """Active weather warnings in a region at or above a severity
        ('minor', 'moderate', 'severe', 'extreme')."""
        return self._get("alerts", region=region, min_severity=severity)
