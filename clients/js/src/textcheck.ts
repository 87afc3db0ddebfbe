/** The check of a turn's text (PROTOCOL.md §3, "Checking a reply"): turn.end carries `xlen`, the UTF-8 length in
 * bytes of all the turn's delta.x concatenated, and `xcrc`, the CRC-32 (zlib/IEEE, unsigned) of those bytes. */

const TABLE = (() => {
  const table = new Uint32Array(256);
  for (let n = 0; n < 256; n++) {
    let c = n;
    for (let k = 0; k < 8; k++) c = c & 1 ? 0xedb88320 ^ (c >>> 1) : c >>> 1;
    table[n] = c >>> 0;
  }
  return table;
})();

/** `[xlen, xcrc]` of `text`: its UTF-8 length and the CRC-32 of its UTF-8 bytes, encoded here byte by byte (no
 * TextEncoder: React Native's engines do not all have one). A lone surrogate counts as U+FFFD, as TextEncoder's. */
export function textCheck(text: string): [number, number] {
  let crc = 0xffffffff;
  let len = 0;
  const put = (byte: number): void => {
    crc = TABLE[(crc ^ byte) & 0xff]! ^ (crc >>> 8);
    len++;
  };
  for (let i = 0; i < text.length; i++) {
    let cp = text.charCodeAt(i);
    if (cp >= 0xd800 && cp <= 0xdbff && i + 1 < text.length) {
      const lo = text.charCodeAt(i + 1);
      if (lo >= 0xdc00 && lo <= 0xdfff) {
        cp = 0x10000 + ((cp - 0xd800) << 10) + (lo - 0xdc00);
        i++;
      }
    }
    if (cp >= 0xd800 && cp <= 0xdfff) cp = 0xfffd;
    if (cp < 0x80) put(cp);
    else if (cp < 0x800) {
      put(0xc0 | (cp >> 6));
      put(0x80 | (cp & 0x3f));
    } else if (cp < 0x10000) {
      put(0xe0 | (cp >> 12));
      put(0x80 | ((cp >> 6) & 0x3f));
      put(0x80 | (cp & 0x3f));
    } else {
      put(0xf0 | (cp >> 18));
      put(0x80 | ((cp >> 12) & 0x3f));
      put(0x80 | ((cp >> 6) & 0x3f));
      put(0x80 | (cp & 0x3f));
    }
  }
  return [len, (crc ^ 0xffffffff) >>> 0];
}

/** What differs between `text` and a turn.end's xlen/xcrc, or null when they agree or the frame has neither (a
 * server from before they existed). */
export function mismatch(text: string, end: { xlen?: number; xcrc?: number }): string | null {
  const [xlen, xcrc] = textCheck(text);
  if (end.xlen != null && end.xlen !== xlen) return `the text is ${xlen} UTF-8 bytes; turn.end says ${end.xlen}`;
  if (end.xcrc != null && end.xcrc !== xcrc) return `the text's CRC-32 is ${xcrc}; turn.end says ${end.xcrc}`;
  return null;
}
