/** Encoding and decoding for the two subprotocols: rt.v1.msgpack (binary frames) and rt.v1.json (text frames). */
import { type Frame, type Subprotocol } from "./frames.js";
export interface Codec {
    readonly subprotocol: Subprotocol;
    readonly binary: boolean;
    encode(frame: Frame): Uint8Array | string;
    decode(data: unknown): Frame;
}
/** The frame without its null and undefined keys: null is absent (PROTOCOL.md §2), so the client sends neither.
 * The codecs write what they are given, nulls too (the golden vectors hold a frame with nulls). */
export declare function compact(frame: Frame): Frame;
export declare class MsgpackCodec implements Codec {
    readonly subprotocol = "rt.v1.msgpack";
    readonly binary = true;
    private readonly encoder;
    private readonly decoder;
    encode(frame: Frame): Uint8Array;
    decode(data: unknown): Frame;
}
export declare class JsonCodec implements Codec {
    readonly subprotocol = "rt.v1.json";
    readonly binary = false;
    encode(frame: Frame): string;
    decode(data: unknown): Frame;
}
export declare function codecFor(subprotocol: Subprotocol): Codec;
