/** A small typed event emitter (no EventTarget: React Native and older Node lack a usable one). */
export declare class Emitter<Events extends {
    [name: string]: unknown;
}> {
    private readonly listeners;
    /** Calls `fn` on each `event`; returns the function that stops it. */
    on<K extends keyof Events>(event: K, fn: (value: Events[K]) => void): () => void;
    protected emit<K extends keyof Events>(event: K, value: Events[K]): void;
    protected hasListeners(event: keyof Events): boolean;
}
