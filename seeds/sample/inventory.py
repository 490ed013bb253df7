"""Stock keeping for a small shop: items, quantities and reorder alerts."""

from dataclasses import dataclass


@dataclass
class Item:
    sku: str
    name: str
    quantity: int
    reorder_level: int
    unit_price: float


def add_stock(items: dict[str, Item], sku: str, amount: int) -> Item:
    """Increase the quantity of an existing item.

    Raises KeyError if the SKU is unknown and ValueError if amount is not positive.
    """
    if amount <= 0:
        raise ValueError("amount must be positive")
    item = items[sku]
    item.quantity += amount
    return item


def remove_stock(items: dict[str, Item], sku: str, amount: int) -> Item:
    """Decrease the quantity of an item after a sale; refuses to go below zero."""
    item = items[sku]
    if amount > item.quantity:
        raise ValueError(f"only {item.quantity} of {sku} in stock")
    item.quantity -= amount
    return item


def items_to_reorder(items: dict[str, Item]) -> list[Item]:
    """Items at or below their reorder level, lowest stock first."""
    low = [item for item in items.values() if item.quantity <= item.reorder_level]
    return sorted(low, key=lambda item: item.quantity)


def stock_value(items: dict[str, Item]) -> float:
    """Total value of the stock at unit prices, rounded to cents."""
    return round(sum(item.quantity * item.unit_price for item in items.values()), 2)


def search_items(items: dict[str, Item], text: str, limit: int = 10) -> list[Item]:
    """Items whose name contains the text, case-insensitive, at most `limit` of them."""
    needle = text.lower()
    found = [item for item in items.values() if needle in item.name.lower()]
    return found[:limit]
