/** A small typed event emitter (no EventTarget: React Native and older Node lack a usable one). */

export class Emitter<Events extends { [name: string]: unknown }> {
  private readonly listeners = new Map<keyof Events, Set<(value: never) => void>>();

  /** Calls `fn` on each `event`; returns the function that stops it. */
  on<K extends keyof Events>(event: K, fn: (value: Events[K]) => void): () => void {
    let set = this.listeners.get(event);
    if (set === undefined) this.listeners.set(event, (set = new Set()));
    set.add(fn as (value: never) => void);
    return () => set!.delete(fn as (value: never) => void);
  }

  protected emit<K extends keyof Events>(event: K, value: Events[K]): void {
    const set = this.listeners.get(event);
    if (set === undefined) return;
    for (const fn of [...set]) {
      try {
        (fn as (value: Events[K]) => void)(value);
      } catch {
        // A listener's failure is the application's; it must not break the client's handling of frames.
      }
    }
  }

  protected hasListeners(event: keyof Events): boolean {
    return (this.listeners.get(event)?.size ?? 0) > 0;
  }
}
