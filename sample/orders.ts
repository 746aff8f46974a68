/** The shape every service in the sample agrees on. */
export interface Order {
  id: number;
  customer: string;
  amount: number;
}

/** Billing fails on this order's first attempt only: it shows a retry. */
export const FLAKY_ORDER = 3;
/** Billing always fails on this one: it ends in the dead-letter topic. */
export const POISON_ORDER = 4;
