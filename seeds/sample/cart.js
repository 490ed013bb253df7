// Shopping cart logic for a web shop front end. Prices are in cents to avoid rounding errors.

/**
 * Add a product to the cart, or increase its quantity if it is already there.
 * @param {Array<{id: string, price: number, qty: number}>} cart
 * @param {{id: string, price: number}} product
 * @param {number} qty - how many to add, at least 1
 * @returns {Array} a new cart array
 */
function addToCart(cart, product, qty = 1) {
  if (qty < 1) throw new RangeError("qty must be at least 1");
  const existing = cart.find((line) => line.id === product.id);
  if (existing) {
    return cart.map((line) =>
      line.id === product.id ? { ...line, qty: line.qty + qty } : line
    );
  }
  return [...cart, { id: product.id, price: product.price, qty }];
}

/**
 * Remove a product line from the cart entirely.
 */
function removeFromCart(cart, productId) {
  return cart.filter((line) => line.id !== productId);
}

/**
 * Subtotal in cents before discounts and shipping.
 */
function subtotal(cart) {
  return cart.reduce((sum, line) => sum + line.price * line.qty, 0);
}

/**
 * Apply a discount code. Supported: "SAVE10" (10% off), "FIVEOFF" (500 cents off orders
 * over 3000 cents). Unknown codes leave the total unchanged.
 */
function applyDiscount(totalCents, code) {
  if (code === "SAVE10") return Math.round(totalCents * 0.9);
  if (code === "FIVEOFF" && totalCents > 3000) return totalCents - 500;
  return totalCents;
}

/**
 * Shipping in cents: free from 5000 cents, otherwise 495 (or 995 for express).
 */
function shippingCost(totalCents, express = false) {
  if (totalCents >= 5000) return 0;
  return express ? 995 : 495;
}

module.exports = { addToCart, removeFromCart, subtotal, applyDiscount, shippingCost };
