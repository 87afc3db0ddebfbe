/** What a client has seen of one session: its epoch and the seq of the last frame delivered (PROTOCOL.md §3). */

export class GapError extends Error {
  override name = "GapError";
  constructor(
    readonly expected: number,
    readonly got: number,
  ) {
    super(`expected seq ${expected}, got ${got}`);
  }
}

export class SeqTracker {
  constructor(
    public epoch: string,
    public lastSeq: number,
  ) {}

  /** A `session` frame that was not a recovery: start over at its epoch and seq. */
  reset(epoch: string, seq: number): void {
    this.epoch = epoch;
    this.lastSeq = seq;
  }

  /** True if the frame is new and next in line; false if already seen; GapError if frames are missing. */
  accept(seq: number): boolean {
    if (seq <= this.lastSeq) return false;
    if (seq !== this.lastSeq + 1) throw new GapError(this.lastSeq + 1, seq);
    this.lastSeq = seq;
    return true;
  }
}
