// Serialises async sections per key (e.g. per user), in call order, so read-modify-write cycles
// on one user's data cannot interleave and lose each other's update. Only keys with work queued
// stay in the map, so it does not grow with the number of users.
export class KeyedLock {
  private readonly tails = new Map<string, Promise<void>>();

  run<T>(key: string, fn: () => Promise<T>): Promise<T> {
    const result = (this.tails.get(key) ?? Promise.resolve()).then(fn);
    const tail = result.then(() => undefined, () => undefined);
    this.tails.set(key, tail);
    void tail.then(() => {
      if (this.tails.get(key) === tail) this.tails.delete(key);
    });
    return result;
  }
}
