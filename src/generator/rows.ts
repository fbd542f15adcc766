import { centsToDecimal, type Rng } from './rng.ts';

/**
 * Pure row generators for the demo schema ([contract: Source](../../docs/contract.md#1-source)). They return plain
 * values with money as exact decimal strings; the writer decides how to
 * batch them into SQL.
 */
export const SEGMENTS = ['bronze', 'silver', 'gold', 'platinum'] as const;
export type Segment = (typeof SEGMENTS)[number];
export const CATEGORIES = ['electronics', 'books', 'home', 'garden', 'toys', 'sports', 'beauty', 'grocery', 'fashion', 'automotive'] as const;
const FIRST = ['Ada', 'Grace', 'Alan', 'Edsger', 'Barbara', 'Donald', 'Frances', 'Ken', 'Margaret', 'Dennis', 'Radia', 'Linus', 'Sophie', 'Tim', 'Hedy', 'Niklaus'];
const LAST = ['Lovelace', 'Hopper', 'Turing', 'Dijkstra', 'Liskov', 'Knuth', 'Allen', 'Thompson', 'Hamilton', 'Ritchie', 'Perlman', 'Torvalds', 'Wilson', 'Berners-Lee', 'Lamarr', 'Wirth'];
const ADJ = ['Classic', 'Smart', 'Eco', 'Deluxe', 'Compact', 'Ultra', 'Vintage', 'Portable', 'Premium', 'Essential'];
const NOUN = ['Lamp', 'Kettle', 'Novel', 'Backpack', 'Headphones', 'Planter', 'Puzzle', 'Sneakers', 'Serum', 'Blender', 'Drone', 'Jacket'];

export interface CustomerRow {
  customerId: number;
  email: string;
  firstName: string;
  lastName: string;
  segment: Segment;
}

export interface ProductRow {
  productId: number;
  productName: string;
  /** Null for about one product in 20: uncategorised products, which mart_sales counts in its NULL category group. */
  category: string | null;
  price: string;
  rating: string | null;
}

export interface OrderItemRow {
  productId: number;
  quantity: number;
  unitPrice: string;
  discount: string;
}

export function makeCustomer(rng: Rng, customerId: number): CustomerRow {
  const firstName = rng.pick(FIRST);
  const lastName = rng.pick(LAST);
  // Mixed case and stray spaces exercise email_normalized (lower, trimmed).
  const local = `${firstName}.${lastName}${customerId}`;
  const email = `${rng.chance(0.1) ? ' ' : ''}${rng.chance(0.3) ? local : local.toLowerCase()}@example.com${rng.chance(0.05) ? ' ' : ''}`;
  return { customerId, email, firstName, lastName, segment: rng.pick(SEGMENTS) };
}

/** Every 20th product has no category; decided by id rather than a draw so a seed yields the same other values as before. */
const UNCATEGORISED_EVERY = 20;

export function makeProduct(rng: Rng, productId: number): ProductRow {
  const cents = rng.cents(199, 49_999);
  const productName = `${rng.pick(ADJ)} ${rng.pick(NOUN)} ${productId}`;
  const category = rng.pick(CATEGORIES);
  return {
    productId,
    productName,
    category: productId % UNCATEGORISED_EVERY === 0 ? null : category,
    price: centsToDecimal(cents),
    rating: rng.chance(0.15) ? null : centsToDecimal(rng.int(100, 500)),
  };
}

/** 1–5 distinct products per order, priced at the catalogue price, a few discounted. */
export function makeOrderItems(rng: Rng, products: readonly ProductRow[]): OrderItemRow[] {
  const n = Math.min(products.length, rng.int(1, 5));
  const chosen = new Map<number, ProductRow>();
  while (chosen.size < n) {
    const p = rng.pick(products);
    chosen.set(p.productId, p);
  }
  return [...chosen.values()].map((p) => ({
    productId: p.productId,
    quantity: rng.int(1, 4),
    unitPrice: p.price,
    discount: rng.chance(0.25) ? centsToDecimal(rng.pick([5, 10, 15, 20, 25, 33, 50])) : '0.00',
  }));
}

/** The next status an order may move to, or undefined when it is final. */
export function nextStatus(rng: Rng, status: string): string | undefined {
  switch (status) {
    case 'placed':
      return rng.chance(0.12) ? 'cancelled' : 'shipped';
    case 'shipped':
      return 'delivered';
    case 'delivered':
      return rng.chance(0.08) ? 'returned' : undefined;
    default:
      return undefined;
  }
}

export function nextSegment(rng: Rng, current: string): Segment {
  const i = SEGMENTS.indexOf(current as Segment);
  const up = rng.chance(0.7);
  const j = Math.max(0, Math.min(SEGMENTS.length - 1, i + (up ? 1 : -1)));
  return SEGMENTS[j === i ? (i === 0 ? 1 : i - 1) : j] as Segment;
}
