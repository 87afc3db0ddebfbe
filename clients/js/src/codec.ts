/** Encoding and decoding for the two subprotocols: rt.v1.msgpack (binary frames) and rt.v1.json (text frames). */

import { Decoder, Encoder } from "@msgpack/msgpack";
import { ProtocolError } from "./errors.js";
import { type Frame, SUBPROTOCOL_JSON, SUBPROTOCOL_MSGPACK, type Subprotocol } from "./frames.js";

export interface Codec {
  readonly subprotocol: Subprotocol;
  readonly binary: boolean;
  encode(frame: Frame): Uint8Array | string;
  decode(data: unknown): Frame;
}

/** The frame without its null and undefined keys: null is absent (PROTOCOL.md §2), so the client sends neither.
 * The codecs write what they are given, nulls too (the golden vectors hold a frame with nulls). */
export function compact(frame: Frame): Frame {
  const out: Frame = { t: frame.t };
  for (const key of Object.keys(frame)) {
    const value = frame[key];
    if (value !== null && value !== undefined) out[key] = value;
  }
  return out;
}

function asFrame(value: unknown): Frame {
  if (value === null || typeof value !== "object" || Array.isArray(value) || typeof (value as Frame).t !== "string") {
    throw new ProtocolError("bad_frame", "a frame is a map with a string t");
  }
  return value as Frame;
}

function bytesOf(data: unknown): Uint8Array | null {
  if (data instanceof Uint8Array) return data; // Node's Buffer too
  if (data instanceof ArrayBuffer) return new Uint8Array(data);
  if (ArrayBuffer.isView(data)) return new Uint8Array(data.buffer, data.byteOffset, data.byteLength);
  return null;
}

export class MsgpackCodec implements Codec {
  readonly subprotocol = SUBPROTOCOL_MSGPACK;
  readonly binary = true;
  // One encoder and decoder, reused: they keep their buffers and the decoder's string cache.
  private readonly encoder = new Encoder();
  private readonly decoder = new Decoder();

  encode(frame: Frame): Uint8Array {
    return this.encoder.encode(frame); // a copy of the encoder's buffer, which the next frame reuses
  }

  decode(data: unknown): Frame {
    const bytes = bytesOf(data);
    if (bytes === null) throw new ProtocolError("bad_frame", "rt.v1.msgpack takes binary frames; this one was text");
    let value: unknown;
    try {
      value = this.decoder.decode(bytes);
    } catch (exc) {
      throw new ProtocolError("bad_frame", `not valid msgpack: ${(exc as Error).message}`);
    }
    return asFrame(value);
  }
}

export class JsonCodec implements Codec {
  readonly subprotocol = SUBPROTOCOL_JSON;
  readonly binary = false;

  encode(frame: Frame): string {
    return JSON.stringify(frame);
  }

  decode(data: unknown): Frame {
    if (typeof data !== "string") throw new ProtocolError("bad_frame", "rt.v1.json takes text frames; this one was binary");
    let value: unknown;
    try {
      value = JSON.parse(data);
    } catch (exc) {
      throw new ProtocolError("bad_frame", `not valid JSON: ${(exc as Error).message}`);
    }
    return asFrame(value);
  }
}

export function codecFor(subprotocol: Subprotocol): Codec {
  if (subprotocol === SUBPROTOCOL_MSGPACK) return new MsgpackCodec();
  if (subprotocol === SUBPROTOCOL_JSON) return new JsonCodec();
  throw new TypeError(`unknown subprotocol ${JSON.stringify(subprotocol)}; use rt.v1.msgpack or rt.v1.json`);
}
