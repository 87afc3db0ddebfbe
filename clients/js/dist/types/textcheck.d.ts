/** The check of a turn's text (PROTOCOL.md §3, "Checking a reply"): turn.end carries `xlen`, the UTF-8 length in
 * bytes of all the turn's delta.x concatenated, and `xcrc`, the CRC-32 (zlib/IEEE, unsigned) of those bytes. */
/** `[xlen, xcrc]` of `text`: its UTF-8 length and the CRC-32 of its UTF-8 bytes, encoded here byte by byte (no
 * TextEncoder: React Native's engines do not all have one). A lone surrogate counts as U+FFFD, as TextEncoder's. */
export declare function textCheck(text: string): [number, number];
/** What differs between `text` and a turn.end's xlen/xcrc, or null when they agree or the frame has neither (a
 * server from before they existed). */
export declare function mismatch(text: string, end: {
    xlen?: number;
    xcrc?: number;
}): string | null;
