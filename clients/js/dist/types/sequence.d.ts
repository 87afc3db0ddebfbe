/** What a client has seen of one session: its epoch and the seq of the last frame delivered (PROTOCOL.md §3). */
export declare class GapError extends Error {
    readonly expected: number;
    readonly got: number;
    name: string;
    constructor(expected: number, got: number);
}
export declare class SeqTracker {
    epoch: string;
    lastSeq: number;
    constructor(epoch: string, lastSeq: number);
    /** A `session` frame that was not a recovery: start over at its epoch and seq. */
    reset(epoch: string, seq: number): void;
    /** True if the frame is new and next in line; false if already seen; GapError if frames are missing. */
    accept(seq: number): boolean;
}
