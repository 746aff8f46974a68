/**
 * Values by integer id, for ids handed out in increasing order and finished
 * mostly in order: the requests and deliveries in flight on a hot path.
 *
 * Why not a Map: a Map that gets one set() and one delete() per request
 * allocates a new hash table every few hundred operations. After a burst has
 * pushed one of those tables into the old generation, each table keeps its
 * successor alive through young collections, so V8 promotes every table and
 * everything in it from then on. In one process that halved a churned Map's
 * speed for good (bench/rpc-after-burst.ts: RPC 100 in flight fell by a
 * quarter after a burst of produce calls).
 *
 * Here an id lives in slot `id & mask` of two arrays that are only replaced
 * when they grow (doubling while more than half full, up to MAX_SLOTS). An id
 * whose slot a newer id needs moves to a Map of stragglers: a request stuck for
 * long while thousands of others pass, which is rare.
 */
const EMPTY = -1;
/** Beyond this many slots, what does not fit waits in the stragglers Map. */
const MAX_SLOTS = 1 << 16;

export class IdTable<T> {
  private ids: Float64Array;
  private values: (T | undefined)[];
  private mask: number;
  private inSlots = 0;
  private readonly stragglers = new Map<number, T>();

  constructor(initialSlots = 64) {
    let n = 1;
    while (n < initialSlots) n *= 2;
    this.ids = new Float64Array(n).fill(EMPTY);
    this.values = new Array<T | undefined>(n).fill(undefined);
    this.mask = n - 1;
  }

  get size(): number {
    return this.inSlots + this.stragglers.size;
  }

  get(id: number): T | undefined {
    const i = id & this.mask;
    if (this.ids[i] === id) return this.values[i];
    return this.stragglers.size === 0 ? undefined : this.stragglers.get(id);
  }

  has(id: number): boolean {
    const i = id & this.mask;
    return this.ids[i] === id || (this.stragglers.size !== 0 && this.stragglers.has(id));
  }

  /** `id`: an integer >= 0. */
  set(id: number, value: T): void {
    const i = id & this.mask;
    const held = this.ids[i];
    if (held === id) {
      this.values[i] = value;
      return;
    }
    if (this.stragglers.size !== 0 && this.stragglers.has(id)) {
      this.stragglers.set(id, value);
      return;
    }
    if (held !== EMPTY) {
      if (this.ids.length < MAX_SLOTS && this.inSlots * 2 >= this.ids.length) {
        this.grow();
        this.set(id, value);
        return;
      }
      this.stragglers.set(held, this.values[i] as T);
      this.inSlots--;
    }
    this.ids[i] = id;
    this.values[i] = value;
    this.inSlots++;
  }

  delete(id: number): boolean {
    const i = id & this.mask;
    if (this.ids[i] === id) {
      this.ids[i] = EMPTY;
      this.values[i] = undefined;
      this.inSlots--;
      return true;
    }
    return this.stragglers.size !== 0 && this.stragglers.delete(id);
  }

  /** Removes and returns the value of `id`. */
  take(id: number): T | undefined {
    const v = this.get(id);
    if (v !== undefined) this.delete(id);
    return v;
  }

  /** Every value, in no particular order (for close and clean-up paths, not per request). */
  valuesList(): T[] {
    const out: T[] = [];
    for (let i = 0; i < this.ids.length; i++) if (this.ids[i] !== EMPTY) out.push(this.values[i] as T);
    for (const v of this.stragglers.values()) out.push(v);
    return out;
  }

  clear(): void {
    this.ids.fill(EMPTY);
    this.values.fill(undefined);
    this.inSlots = 0;
    this.stragglers.clear();
  }

  private grow(): void {
    const oldIds = this.ids;
    const oldValues = this.values;
    const n = oldIds.length * 2;
    this.ids = new Float64Array(n).fill(EMPTY);
    this.values = new Array<T | undefined>(n).fill(undefined);
    this.mask = n - 1;
    this.inSlots = 0;
    const moved = [...this.stragglers];
    this.stragglers.clear();
    for (let i = 0; i < oldIds.length; i++) if (oldIds[i] !== EMPTY) this.set(oldIds[i], oldValues[i] as T);
    for (const [id, v] of moved) this.set(id, v);
  }
}
