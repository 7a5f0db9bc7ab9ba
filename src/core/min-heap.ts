/**
 * A binary min-heap of (key, value) entries ordered by a number key (a time), for the due queues:
 * the memory ScheduleStore's next fire times, the Orchestrator's run deadlines. Deletion is
 * lazy: callers drop an entry that no longer applies when it surfaces. Written here because
 * Effect's collections are immutable (each change allocates) and no maintained mutable heap
 * package is among the dependencies; it is forty lines.
 */
export type HeapEntry<V> = readonly [key: number, value: V];

export class MinHeap<V> {
  private readonly a: Array<HeapEntry<V>> = [];
  get size(): number {
    return this.a.length;
  }
  clear(): void {
    this.a.length = 0;
  }
  peek(): HeapEntry<V> | undefined {
    return this.a[0];
  }
  push(e: HeapEntry<V>): void {
    const a = this.a;
    a.push(e);
    let i = a.length - 1;
    while (i > 0) {
      const p = (i - 1) >> 1;
      if (a[p]![0] <= e[0]) break;
      a[i] = a[p]!;
      i = p;
    }
    a[i] = e;
  }
  pop(): HeapEntry<V> | undefined {
    const a = this.a;
    const top = a[0];
    const last = a.pop();
    if (a.length > 0 && last !== undefined) {
      let i = 0;
      for (;;) {
        const l = 2 * i + 1;
        const r = l + 1;
        let m = i;
        const mv = (j: number) => (j === i ? last[0] : a[j]![0]);
        if (l < a.length && a[l]![0] < mv(m)) m = l;
        if (r < a.length && a[r]![0] < mv(m)) m = r;
        if (m === i) break;
        a[i] = a[m]!;
        i = m;
      }
      a[i] = last;
    }
    return top;
  }
}
