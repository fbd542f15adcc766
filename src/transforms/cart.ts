/**
 * Exact decimal arithmetic for cart values (docs/contract.md §3 `int_cart_value`).
 * Money never becomes a JS float: a decimal string is held as an unscaled
 * bigint plus a scale, and sums are taken at the largest scale seen.
 */
export interface Decimal {
  unscaled: bigint;
  scale: number;
}

const DECIMAL = /^(-?)(\d+)(?:\.(\d+))?$/;

export function parseDecimal(text: string): Decimal {
  const m = DECIMAL.exec(text);
  if (!m) throw new TypeError(`not a decimal: "${text}"`);
  const [, sign, int, frac = ''] = m;
  const unscaled = BigInt(int! + frac);
  return { unscaled: sign ? -unscaled : unscaled, scale: frac.length };
}

function rescale(d: Decimal, scale: number): bigint {
  return d.unscaled * 10n ** BigInt(scale - d.scale);
}

export function addDecimal(a: Decimal, b: Decimal): Decimal {
  const scale = Math.max(a.scale, b.scale);
  return { unscaled: rescale(a, scale) + rescale(b, scale), scale };
}

export function mulInt(a: Decimal, n: number | bigint): Decimal {
  return { unscaled: a.unscaled * BigInt(n), scale: a.scale };
}

export function formatDecimal(d: Decimal): string {
  const neg = d.unscaled < 0n;
  const digits = (neg ? -d.unscaled : d.unscaled).toString();
  if (d.scale === 0) return (neg ? '-' : '') + digits;
  const padded = digits.padStart(d.scale + 1, '0');
  return `${neg ? '-' : ''}${padded.slice(0, -d.scale)}.${padded.slice(-d.scale)}`;
}

export const ZERO: Decimal = { unscaled: 0n, scale: 0 };

export interface CartLine {
  eventType: string;
  quantity: number | null;
  unitPrice: string | null;
}

/**
 * The cart's value at session end: sum(add_to_cart quantity × unit_price)
 * minus sum(remove_from_cart quantity × unit_price), floored at 0 once, on
 * the session total. The floor is deliberately not applied to a running
 * total: a running floor would make the value depend on the order of events
 * with equal or reordered timestamps (a remove seen before its add), while
 * the end floor is a plain aggregate that a batch SQL `greatest(sum, 0)`
 * reproduces exactly. Lines lacking quantity or price add nothing (the
 * consumer's validation rejects such cart events before they get here).
 */
export function cartValueAtEnd(lines: Iterable<CartLine>): Decimal {
  let total = ZERO;
  for (const l of lines) {
    if (l.quantity === null || l.unitPrice === null) continue;
    if (l.eventType === 'add_to_cart') total = addDecimal(total, mulInt(parseDecimal(l.unitPrice), l.quantity));
    else if (l.eventType === 'remove_from_cart') total = addDecimal(total, mulInt(parseDecimal(l.unitPrice), -l.quantity));
  }
  return total.unscaled < 0n ? ZERO : total;
}
