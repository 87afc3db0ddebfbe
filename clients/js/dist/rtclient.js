// rtserver reference client (protocol v1), built from clients/js/src by `npm run build`; do not edit.

// src/backoff.ts
var Backoff = class {
  constructor(options = {}) {
    this.base = options.base ?? 0.5;
    this.cap = options.cap ?? 20;
    this.maxAttempts = options.maxAttempts ?? null;
    this.random = options.random ?? Math.random;
  }
  /** Seconds to wait before each attempt: uniform in [0, min(cap, base * 2^attempt)). */
  *delays() {
    for (let attempt = 0; this.maxAttempts === null || attempt < this.maxAttempts; attempt++) {
      yield this.random() * Math.min(this.cap, this.base * 2 ** attempt);
    }
  }
};

// node_modules/@msgpack/msgpack/dist.es5+esm/utils/int.mjs
var UINT32_MAX = 4294967295;
function setUint64(view, offset, value) {
  var high = value / 4294967296;
  var low = value;
  view.setUint32(offset, high);
  view.setUint32(offset + 4, low);
}
function setInt64(view, offset, value) {
  var high = Math.floor(value / 4294967296);
  var low = value;
  view.setUint32(offset, high);
  view.setUint32(offset + 4, low);
}
function getInt64(view, offset) {
  var high = view.getInt32(offset);
  var low = view.getUint32(offset + 4);
  return high * 4294967296 + low;
}
function getUint64(view, offset) {
  var high = view.getUint32(offset);
  var low = view.getUint32(offset + 4);
  return high * 4294967296 + low;
}

// node_modules/@msgpack/msgpack/dist.es5+esm/utils/utf8.mjs
var _a;
var _b;
var _c;
var TEXT_ENCODING_AVAILABLE = (typeof process === "undefined" || ((_a = process === null || process === void 0 ? void 0 : process.env) === null || _a === void 0 ? void 0 : _a["TEXT_ENCODING"]) !== "never") && typeof TextEncoder !== "undefined" && typeof TextDecoder !== "undefined";
function utf8Count(str) {
  var strLength = str.length;
  var byteLength = 0;
  var pos = 0;
  while (pos < strLength) {
    var value = str.charCodeAt(pos++);
    if ((value & 4294967168) === 0) {
      byteLength++;
      continue;
    } else if ((value & 4294965248) === 0) {
      byteLength += 2;
    } else {
      if (value >= 55296 && value <= 56319) {
        if (pos < strLength) {
          var extra = str.charCodeAt(pos);
          if ((extra & 64512) === 56320) {
            ++pos;
            value = ((value & 1023) << 10) + (extra & 1023) + 65536;
          }
        }
      }
      if ((value & 4294901760) === 0) {
        byteLength += 3;
      } else {
        byteLength += 4;
      }
    }
  }
  return byteLength;
}
function utf8EncodeJs(str, output, outputOffset) {
  var strLength = str.length;
  var offset = outputOffset;
  var pos = 0;
  while (pos < strLength) {
    var value = str.charCodeAt(pos++);
    if ((value & 4294967168) === 0) {
      output[offset++] = value;
      continue;
    } else if ((value & 4294965248) === 0) {
      output[offset++] = value >> 6 & 31 | 192;
    } else {
      if (value >= 55296 && value <= 56319) {
        if (pos < strLength) {
          var extra = str.charCodeAt(pos);
          if ((extra & 64512) === 56320) {
            ++pos;
            value = ((value & 1023) << 10) + (extra & 1023) + 65536;
          }
        }
      }
      if ((value & 4294901760) === 0) {
        output[offset++] = value >> 12 & 15 | 224;
        output[offset++] = value >> 6 & 63 | 128;
      } else {
        output[offset++] = value >> 18 & 7 | 240;
        output[offset++] = value >> 12 & 63 | 128;
        output[offset++] = value >> 6 & 63 | 128;
      }
    }
    output[offset++] = value & 63 | 128;
  }
}
var sharedTextEncoder = TEXT_ENCODING_AVAILABLE ? new TextEncoder() : void 0;
var TEXT_ENCODER_THRESHOLD = !TEXT_ENCODING_AVAILABLE ? UINT32_MAX : typeof process !== "undefined" && ((_b = process === null || process === void 0 ? void 0 : process.env) === null || _b === void 0 ? void 0 : _b["TEXT_ENCODING"]) !== "force" ? 200 : 0;
function utf8EncodeTEencode(str, output, outputOffset) {
  output.set(sharedTextEncoder.encode(str), outputOffset);
}
function utf8EncodeTEencodeInto(str, output, outputOffset) {
  sharedTextEncoder.encodeInto(str, output.subarray(outputOffset));
}
var utf8EncodeTE = (sharedTextEncoder === null || sharedTextEncoder === void 0 ? void 0 : sharedTextEncoder.encodeInto) ? utf8EncodeTEencodeInto : utf8EncodeTEencode;
var CHUNK_SIZE = 4096;
function utf8DecodeJs(bytes, inputOffset, byteLength) {
  var offset = inputOffset;
  var end = offset + byteLength;
  var units = [];
  var result2 = "";
  while (offset < end) {
    var byte1 = bytes[offset++];
    if ((byte1 & 128) === 0) {
      units.push(byte1);
    } else if ((byte1 & 224) === 192) {
      var byte2 = bytes[offset++] & 63;
      units.push((byte1 & 31) << 6 | byte2);
    } else if ((byte1 & 240) === 224) {
      var byte2 = bytes[offset++] & 63;
      var byte3 = bytes[offset++] & 63;
      units.push((byte1 & 31) << 12 | byte2 << 6 | byte3);
    } else if ((byte1 & 248) === 240) {
      var byte2 = bytes[offset++] & 63;
      var byte3 = bytes[offset++] & 63;
      var byte4 = bytes[offset++] & 63;
      var unit = (byte1 & 7) << 18 | byte2 << 12 | byte3 << 6 | byte4;
      if (unit > 65535) {
        unit -= 65536;
        units.push(unit >>> 10 & 1023 | 55296);
        unit = 56320 | unit & 1023;
      }
      units.push(unit);
    } else {
      units.push(byte1);
    }
    if (units.length >= CHUNK_SIZE) {
      result2 += String.fromCharCode.apply(String, units);
      units.length = 0;
    }
  }
  if (units.length > 0) {
    result2 += String.fromCharCode.apply(String, units);
  }
  return result2;
}
var sharedTextDecoder = TEXT_ENCODING_AVAILABLE ? new TextDecoder() : null;
var TEXT_DECODER_THRESHOLD = !TEXT_ENCODING_AVAILABLE ? UINT32_MAX : typeof process !== "undefined" && ((_c = process === null || process === void 0 ? void 0 : process.env) === null || _c === void 0 ? void 0 : _c["TEXT_DECODER"]) !== "force" ? 200 : 0;
function utf8DecodeTD(bytes, inputOffset, byteLength) {
  var stringBytes = bytes.subarray(inputOffset, inputOffset + byteLength);
  return sharedTextDecoder.decode(stringBytes);
}

// node_modules/@msgpack/msgpack/dist.es5+esm/ExtData.mjs
var ExtData = (
  /** @class */
  /* @__PURE__ */ (function() {
    function ExtData2(type, data) {
      this.type = type;
      this.data = data;
    }
    return ExtData2;
  })()
);

// node_modules/@msgpack/msgpack/dist.es5+esm/DecodeError.mjs
var __extends = /* @__PURE__ */ (function() {
  var extendStatics = function(d, b) {
    extendStatics = Object.setPrototypeOf || { __proto__: [] } instanceof Array && function(d2, b2) {
      d2.__proto__ = b2;
    } || function(d2, b2) {
      for (var p in b2) if (Object.prototype.hasOwnProperty.call(b2, p)) d2[p] = b2[p];
    };
    return extendStatics(d, b);
  };
  return function(d, b) {
    if (typeof b !== "function" && b !== null)
      throw new TypeError("Class extends value " + String(b) + " is not a constructor or null");
    extendStatics(d, b);
    function __() {
      this.constructor = d;
    }
    d.prototype = b === null ? Object.create(b) : (__.prototype = b.prototype, new __());
  };
})();
var DecodeError = (
  /** @class */
  (function(_super) {
    __extends(DecodeError2, _super);
    function DecodeError2(message) {
      var _this = _super.call(this, message) || this;
      var proto = Object.create(DecodeError2.prototype);
      Object.setPrototypeOf(_this, proto);
      Object.defineProperty(_this, "name", {
        configurable: true,
        enumerable: false,
        value: DecodeError2.name
      });
      return _this;
    }
    return DecodeError2;
  })(Error)
);

// node_modules/@msgpack/msgpack/dist.es5+esm/timestamp.mjs
var EXT_TIMESTAMP = -1;
var TIMESTAMP32_MAX_SEC = 4294967296 - 1;
var TIMESTAMP64_MAX_SEC = 17179869184 - 1;
function encodeTimeSpecToTimestamp(_a2) {
  var sec = _a2.sec, nsec = _a2.nsec;
  if (sec >= 0 && nsec >= 0 && sec <= TIMESTAMP64_MAX_SEC) {
    if (nsec === 0 && sec <= TIMESTAMP32_MAX_SEC) {
      var rv = new Uint8Array(4);
      var view = new DataView(rv.buffer);
      view.setUint32(0, sec);
      return rv;
    } else {
      var secHigh = sec / 4294967296;
      var secLow = sec & 4294967295;
      var rv = new Uint8Array(8);
      var view = new DataView(rv.buffer);
      view.setUint32(0, nsec << 2 | secHigh & 3);
      view.setUint32(4, secLow);
      return rv;
    }
  } else {
    var rv = new Uint8Array(12);
    var view = new DataView(rv.buffer);
    view.setUint32(0, nsec);
    setInt64(view, 4, sec);
    return rv;
  }
}
function encodeDateToTimeSpec(date) {
  var msec = date.getTime();
  var sec = Math.floor(msec / 1e3);
  var nsec = (msec - sec * 1e3) * 1e6;
  var nsecInSec = Math.floor(nsec / 1e9);
  return {
    sec: sec + nsecInSec,
    nsec: nsec - nsecInSec * 1e9
  };
}
function encodeTimestampExtension(object) {
  if (object instanceof Date) {
    var timeSpec = encodeDateToTimeSpec(object);
    return encodeTimeSpecToTimestamp(timeSpec);
  } else {
    return null;
  }
}
function decodeTimestampToTimeSpec(data) {
  var view = new DataView(data.buffer, data.byteOffset, data.byteLength);
  switch (data.byteLength) {
    case 4: {
      var sec = view.getUint32(0);
      var nsec = 0;
      return { sec, nsec };
    }
    case 8: {
      var nsec30AndSecHigh2 = view.getUint32(0);
      var secLow32 = view.getUint32(4);
      var sec = (nsec30AndSecHigh2 & 3) * 4294967296 + secLow32;
      var nsec = nsec30AndSecHigh2 >>> 2;
      return { sec, nsec };
    }
    case 12: {
      var sec = getInt64(view, 4);
      var nsec = view.getUint32(0);
      return { sec, nsec };
    }
    default:
      throw new DecodeError("Unrecognized data size for timestamp (expected 4, 8, or 12): ".concat(data.length));
  }
}
function decodeTimestampExtension(data) {
  var timeSpec = decodeTimestampToTimeSpec(data);
  return new Date(timeSpec.sec * 1e3 + timeSpec.nsec / 1e6);
}
var timestampExtension = {
  type: EXT_TIMESTAMP,
  encode: encodeTimestampExtension,
  decode: decodeTimestampExtension
};

// node_modules/@msgpack/msgpack/dist.es5+esm/ExtensionCodec.mjs
var ExtensionCodec = (
  /** @class */
  (function() {
    function ExtensionCodec2() {
      this.builtInEncoders = [];
      this.builtInDecoders = [];
      this.encoders = [];
      this.decoders = [];
      this.register(timestampExtension);
    }
    ExtensionCodec2.prototype.register = function(_a2) {
      var type = _a2.type, encode = _a2.encode, decode = _a2.decode;
      if (type >= 0) {
        this.encoders[type] = encode;
        this.decoders[type] = decode;
      } else {
        var index = 1 + type;
        this.builtInEncoders[index] = encode;
        this.builtInDecoders[index] = decode;
      }
    };
    ExtensionCodec2.prototype.tryToEncode = function(object, context) {
      for (var i = 0; i < this.builtInEncoders.length; i++) {
        var encodeExt = this.builtInEncoders[i];
        if (encodeExt != null) {
          var data = encodeExt(object, context);
          if (data != null) {
            var type = -1 - i;
            return new ExtData(type, data);
          }
        }
      }
      for (var i = 0; i < this.encoders.length; i++) {
        var encodeExt = this.encoders[i];
        if (encodeExt != null) {
          var data = encodeExt(object, context);
          if (data != null) {
            var type = i;
            return new ExtData(type, data);
          }
        }
      }
      if (object instanceof ExtData) {
        return object;
      }
      return null;
    };
    ExtensionCodec2.prototype.decode = function(data, type, context) {
      var decodeExt = type < 0 ? this.builtInDecoders[-1 - type] : this.decoders[type];
      if (decodeExt) {
        return decodeExt(data, type, context);
      } else {
        return new ExtData(type, data);
      }
    };
    ExtensionCodec2.defaultCodec = new ExtensionCodec2();
    return ExtensionCodec2;
  })()
);

// node_modules/@msgpack/msgpack/dist.es5+esm/utils/typedArrays.mjs
function ensureUint8Array(buffer) {
  if (buffer instanceof Uint8Array) {
    return buffer;
  } else if (ArrayBuffer.isView(buffer)) {
    return new Uint8Array(buffer.buffer, buffer.byteOffset, buffer.byteLength);
  } else if (buffer instanceof ArrayBuffer) {
    return new Uint8Array(buffer);
  } else {
    return Uint8Array.from(buffer);
  }
}
function createDataView(buffer) {
  if (buffer instanceof ArrayBuffer) {
    return new DataView(buffer);
  }
  var bufferView = ensureUint8Array(buffer);
  return new DataView(bufferView.buffer, bufferView.byteOffset, bufferView.byteLength);
}

// node_modules/@msgpack/msgpack/dist.es5+esm/Encoder.mjs
var DEFAULT_MAX_DEPTH = 100;
var DEFAULT_INITIAL_BUFFER_SIZE = 2048;
var Encoder = (
  /** @class */
  (function() {
    function Encoder2(extensionCodec, context, maxDepth, initialBufferSize, sortKeys, forceFloat32, ignoreUndefined, forceIntegerToFloat) {
      if (extensionCodec === void 0) {
        extensionCodec = ExtensionCodec.defaultCodec;
      }
      if (context === void 0) {
        context = void 0;
      }
      if (maxDepth === void 0) {
        maxDepth = DEFAULT_MAX_DEPTH;
      }
      if (initialBufferSize === void 0) {
        initialBufferSize = DEFAULT_INITIAL_BUFFER_SIZE;
      }
      if (sortKeys === void 0) {
        sortKeys = false;
      }
      if (forceFloat32 === void 0) {
        forceFloat32 = false;
      }
      if (ignoreUndefined === void 0) {
        ignoreUndefined = false;
      }
      if (forceIntegerToFloat === void 0) {
        forceIntegerToFloat = false;
      }
      this.extensionCodec = extensionCodec;
      this.context = context;
      this.maxDepth = maxDepth;
      this.initialBufferSize = initialBufferSize;
      this.sortKeys = sortKeys;
      this.forceFloat32 = forceFloat32;
      this.ignoreUndefined = ignoreUndefined;
      this.forceIntegerToFloat = forceIntegerToFloat;
      this.pos = 0;
      this.view = new DataView(new ArrayBuffer(this.initialBufferSize));
      this.bytes = new Uint8Array(this.view.buffer);
    }
    Encoder2.prototype.reinitializeState = function() {
      this.pos = 0;
    };
    Encoder2.prototype.encodeSharedRef = function(object) {
      this.reinitializeState();
      this.doEncode(object, 1);
      return this.bytes.subarray(0, this.pos);
    };
    Encoder2.prototype.encode = function(object) {
      this.reinitializeState();
      this.doEncode(object, 1);
      return this.bytes.slice(0, this.pos);
    };
    Encoder2.prototype.doEncode = function(object, depth) {
      if (depth > this.maxDepth) {
        throw new Error("Too deep objects in depth ".concat(depth));
      }
      if (object == null) {
        this.encodeNil();
      } else if (typeof object === "boolean") {
        this.encodeBoolean(object);
      } else if (typeof object === "number") {
        this.encodeNumber(object);
      } else if (typeof object === "string") {
        this.encodeString(object);
      } else {
        this.encodeObject(object, depth);
      }
    };
    Encoder2.prototype.ensureBufferSizeToWrite = function(sizeToWrite) {
      var requiredSize = this.pos + sizeToWrite;
      if (this.view.byteLength < requiredSize) {
        this.resizeBuffer(requiredSize * 2);
      }
    };
    Encoder2.prototype.resizeBuffer = function(newSize) {
      var newBuffer = new ArrayBuffer(newSize);
      var newBytes = new Uint8Array(newBuffer);
      var newView = new DataView(newBuffer);
      newBytes.set(this.bytes);
      this.view = newView;
      this.bytes = newBytes;
    };
    Encoder2.prototype.encodeNil = function() {
      this.writeU8(192);
    };
    Encoder2.prototype.encodeBoolean = function(object) {
      if (object === false) {
        this.writeU8(194);
      } else {
        this.writeU8(195);
      }
    };
    Encoder2.prototype.encodeNumber = function(object) {
      if (Number.isSafeInteger(object) && !this.forceIntegerToFloat) {
        if (object >= 0) {
          if (object < 128) {
            this.writeU8(object);
          } else if (object < 256) {
            this.writeU8(204);
            this.writeU8(object);
          } else if (object < 65536) {
            this.writeU8(205);
            this.writeU16(object);
          } else if (object < 4294967296) {
            this.writeU8(206);
            this.writeU32(object);
          } else {
            this.writeU8(207);
            this.writeU64(object);
          }
        } else {
          if (object >= -32) {
            this.writeU8(224 | object + 32);
          } else if (object >= -128) {
            this.writeU8(208);
            this.writeI8(object);
          } else if (object >= -32768) {
            this.writeU8(209);
            this.writeI16(object);
          } else if (object >= -2147483648) {
            this.writeU8(210);
            this.writeI32(object);
          } else {
            this.writeU8(211);
            this.writeI64(object);
          }
        }
      } else {
        if (this.forceFloat32) {
          this.writeU8(202);
          this.writeF32(object);
        } else {
          this.writeU8(203);
          this.writeF64(object);
        }
      }
    };
    Encoder2.prototype.writeStringHeader = function(byteLength) {
      if (byteLength < 32) {
        this.writeU8(160 + byteLength);
      } else if (byteLength < 256) {
        this.writeU8(217);
        this.writeU8(byteLength);
      } else if (byteLength < 65536) {
        this.writeU8(218);
        this.writeU16(byteLength);
      } else if (byteLength < 4294967296) {
        this.writeU8(219);
        this.writeU32(byteLength);
      } else {
        throw new Error("Too long string: ".concat(byteLength, " bytes in UTF-8"));
      }
    };
    Encoder2.prototype.encodeString = function(object) {
      var maxHeaderSize = 1 + 4;
      var strLength = object.length;
      if (strLength > TEXT_ENCODER_THRESHOLD) {
        var byteLength = utf8Count(object);
        this.ensureBufferSizeToWrite(maxHeaderSize + byteLength);
        this.writeStringHeader(byteLength);
        utf8EncodeTE(object, this.bytes, this.pos);
        this.pos += byteLength;
      } else {
        var byteLength = utf8Count(object);
        this.ensureBufferSizeToWrite(maxHeaderSize + byteLength);
        this.writeStringHeader(byteLength);
        utf8EncodeJs(object, this.bytes, this.pos);
        this.pos += byteLength;
      }
    };
    Encoder2.prototype.encodeObject = function(object, depth) {
      var ext = this.extensionCodec.tryToEncode(object, this.context);
      if (ext != null) {
        this.encodeExtension(ext);
      } else if (Array.isArray(object)) {
        this.encodeArray(object, depth);
      } else if (ArrayBuffer.isView(object)) {
        this.encodeBinary(object);
      } else if (typeof object === "object") {
        this.encodeMap(object, depth);
      } else {
        throw new Error("Unrecognized object: ".concat(Object.prototype.toString.apply(object)));
      }
    };
    Encoder2.prototype.encodeBinary = function(object) {
      var size = object.byteLength;
      if (size < 256) {
        this.writeU8(196);
        this.writeU8(size);
      } else if (size < 65536) {
        this.writeU8(197);
        this.writeU16(size);
      } else if (size < 4294967296) {
        this.writeU8(198);
        this.writeU32(size);
      } else {
        throw new Error("Too large binary: ".concat(size));
      }
      var bytes = ensureUint8Array(object);
      this.writeU8a(bytes);
    };
    Encoder2.prototype.encodeArray = function(object, depth) {
      var size = object.length;
      if (size < 16) {
        this.writeU8(144 + size);
      } else if (size < 65536) {
        this.writeU8(220);
        this.writeU16(size);
      } else if (size < 4294967296) {
        this.writeU8(221);
        this.writeU32(size);
      } else {
        throw new Error("Too large array: ".concat(size));
      }
      for (var _i = 0, object_1 = object; _i < object_1.length; _i++) {
        var item = object_1[_i];
        this.doEncode(item, depth + 1);
      }
    };
    Encoder2.prototype.countWithoutUndefined = function(object, keys) {
      var count = 0;
      for (var _i = 0, keys_1 = keys; _i < keys_1.length; _i++) {
        var key = keys_1[_i];
        if (object[key] !== void 0) {
          count++;
        }
      }
      return count;
    };
    Encoder2.prototype.encodeMap = function(object, depth) {
      var keys = Object.keys(object);
      if (this.sortKeys) {
        keys.sort();
      }
      var size = this.ignoreUndefined ? this.countWithoutUndefined(object, keys) : keys.length;
      if (size < 16) {
        this.writeU8(128 + size);
      } else if (size < 65536) {
        this.writeU8(222);
        this.writeU16(size);
      } else if (size < 4294967296) {
        this.writeU8(223);
        this.writeU32(size);
      } else {
        throw new Error("Too large map object: ".concat(size));
      }
      for (var _i = 0, keys_2 = keys; _i < keys_2.length; _i++) {
        var key = keys_2[_i];
        var value = object[key];
        if (!(this.ignoreUndefined && value === void 0)) {
          this.encodeString(key);
          this.doEncode(value, depth + 1);
        }
      }
    };
    Encoder2.prototype.encodeExtension = function(ext) {
      var size = ext.data.length;
      if (size === 1) {
        this.writeU8(212);
      } else if (size === 2) {
        this.writeU8(213);
      } else if (size === 4) {
        this.writeU8(214);
      } else if (size === 8) {
        this.writeU8(215);
      } else if (size === 16) {
        this.writeU8(216);
      } else if (size < 256) {
        this.writeU8(199);
        this.writeU8(size);
      } else if (size < 65536) {
        this.writeU8(200);
        this.writeU16(size);
      } else if (size < 4294967296) {
        this.writeU8(201);
        this.writeU32(size);
      } else {
        throw new Error("Too large extension object: ".concat(size));
      }
      this.writeI8(ext.type);
      this.writeU8a(ext.data);
    };
    Encoder2.prototype.writeU8 = function(value) {
      this.ensureBufferSizeToWrite(1);
      this.view.setUint8(this.pos, value);
      this.pos++;
    };
    Encoder2.prototype.writeU8a = function(values) {
      var size = values.length;
      this.ensureBufferSizeToWrite(size);
      this.bytes.set(values, this.pos);
      this.pos += size;
    };
    Encoder2.prototype.writeI8 = function(value) {
      this.ensureBufferSizeToWrite(1);
      this.view.setInt8(this.pos, value);
      this.pos++;
    };
    Encoder2.prototype.writeU16 = function(value) {
      this.ensureBufferSizeToWrite(2);
      this.view.setUint16(this.pos, value);
      this.pos += 2;
    };
    Encoder2.prototype.writeI16 = function(value) {
      this.ensureBufferSizeToWrite(2);
      this.view.setInt16(this.pos, value);
      this.pos += 2;
    };
    Encoder2.prototype.writeU32 = function(value) {
      this.ensureBufferSizeToWrite(4);
      this.view.setUint32(this.pos, value);
      this.pos += 4;
    };
    Encoder2.prototype.writeI32 = function(value) {
      this.ensureBufferSizeToWrite(4);
      this.view.setInt32(this.pos, value);
      this.pos += 4;
    };
    Encoder2.prototype.writeF32 = function(value) {
      this.ensureBufferSizeToWrite(4);
      this.view.setFloat32(this.pos, value);
      this.pos += 4;
    };
    Encoder2.prototype.writeF64 = function(value) {
      this.ensureBufferSizeToWrite(8);
      this.view.setFloat64(this.pos, value);
      this.pos += 8;
    };
    Encoder2.prototype.writeU64 = function(value) {
      this.ensureBufferSizeToWrite(8);
      setUint64(this.view, this.pos, value);
      this.pos += 8;
    };
    Encoder2.prototype.writeI64 = function(value) {
      this.ensureBufferSizeToWrite(8);
      setInt64(this.view, this.pos, value);
      this.pos += 8;
    };
    return Encoder2;
  })()
);

// node_modules/@msgpack/msgpack/dist.es5+esm/utils/prettyByte.mjs
function prettyByte(byte) {
  return "".concat(byte < 0 ? "-" : "", "0x").concat(Math.abs(byte).toString(16).padStart(2, "0"));
}

// node_modules/@msgpack/msgpack/dist.es5+esm/CachedKeyDecoder.mjs
var DEFAULT_MAX_KEY_LENGTH = 16;
var DEFAULT_MAX_LENGTH_PER_KEY = 16;
var CachedKeyDecoder = (
  /** @class */
  (function() {
    function CachedKeyDecoder2(maxKeyLength, maxLengthPerKey) {
      if (maxKeyLength === void 0) {
        maxKeyLength = DEFAULT_MAX_KEY_LENGTH;
      }
      if (maxLengthPerKey === void 0) {
        maxLengthPerKey = DEFAULT_MAX_LENGTH_PER_KEY;
      }
      this.maxKeyLength = maxKeyLength;
      this.maxLengthPerKey = maxLengthPerKey;
      this.hit = 0;
      this.miss = 0;
      this.caches = [];
      for (var i = 0; i < this.maxKeyLength; i++) {
        this.caches.push([]);
      }
    }
    CachedKeyDecoder2.prototype.canBeCached = function(byteLength) {
      return byteLength > 0 && byteLength <= this.maxKeyLength;
    };
    CachedKeyDecoder2.prototype.find = function(bytes, inputOffset, byteLength) {
      var records = this.caches[byteLength - 1];
      FIND_CHUNK: for (var _i = 0, records_1 = records; _i < records_1.length; _i++) {
        var record = records_1[_i];
        var recordBytes = record.bytes;
        for (var j = 0; j < byteLength; j++) {
          if (recordBytes[j] !== bytes[inputOffset + j]) {
            continue FIND_CHUNK;
          }
        }
        return record.str;
      }
      return null;
    };
    CachedKeyDecoder2.prototype.store = function(bytes, value) {
      var records = this.caches[bytes.length - 1];
      var record = { bytes, str: value };
      if (records.length >= this.maxLengthPerKey) {
        records[Math.random() * records.length | 0] = record;
      } else {
        records.push(record);
      }
    };
    CachedKeyDecoder2.prototype.decode = function(bytes, inputOffset, byteLength) {
      var cachedValue = this.find(bytes, inputOffset, byteLength);
      if (cachedValue != null) {
        this.hit++;
        return cachedValue;
      }
      this.miss++;
      var str = utf8DecodeJs(bytes, inputOffset, byteLength);
      var slicedCopyOfBytes = Uint8Array.prototype.slice.call(bytes, inputOffset, inputOffset + byteLength);
      this.store(slicedCopyOfBytes, str);
      return str;
    };
    return CachedKeyDecoder2;
  })()
);

// node_modules/@msgpack/msgpack/dist.es5+esm/Decoder.mjs
var __awaiter = function(thisArg, _arguments, P, generator) {
  function adopt(value) {
    return value instanceof P ? value : new P(function(resolve) {
      resolve(value);
    });
  }
  return new (P || (P = Promise))(function(resolve, reject) {
    function fulfilled(value) {
      try {
        step(generator.next(value));
      } catch (e) {
        reject(e);
      }
    }
    function rejected(value) {
      try {
        step(generator["throw"](value));
      } catch (e) {
        reject(e);
      }
    }
    function step(result2) {
      result2.done ? resolve(result2.value) : adopt(result2.value).then(fulfilled, rejected);
    }
    step((generator = generator.apply(thisArg, _arguments || [])).next());
  });
};
var __generator = function(thisArg, body) {
  var _ = { label: 0, sent: function() {
    if (t[0] & 1) throw t[1];
    return t[1];
  }, trys: [], ops: [] }, f, y, t, g;
  return g = { next: verb(0), "throw": verb(1), "return": verb(2) }, typeof Symbol === "function" && (g[Symbol.iterator] = function() {
    return this;
  }), g;
  function verb(n) {
    return function(v) {
      return step([n, v]);
    };
  }
  function step(op) {
    if (f) throw new TypeError("Generator is already executing.");
    while (_) try {
      if (f = 1, y && (t = op[0] & 2 ? y["return"] : op[0] ? y["throw"] || ((t = y["return"]) && t.call(y), 0) : y.next) && !(t = t.call(y, op[1])).done) return t;
      if (y = 0, t) op = [op[0] & 2, t.value];
      switch (op[0]) {
        case 0:
        case 1:
          t = op;
          break;
        case 4:
          _.label++;
          return { value: op[1], done: false };
        case 5:
          _.label++;
          y = op[1];
          op = [0];
          continue;
        case 7:
          op = _.ops.pop();
          _.trys.pop();
          continue;
        default:
          if (!(t = _.trys, t = t.length > 0 && t[t.length - 1]) && (op[0] === 6 || op[0] === 2)) {
            _ = 0;
            continue;
          }
          if (op[0] === 3 && (!t || op[1] > t[0] && op[1] < t[3])) {
            _.label = op[1];
            break;
          }
          if (op[0] === 6 && _.label < t[1]) {
            _.label = t[1];
            t = op;
            break;
          }
          if (t && _.label < t[2]) {
            _.label = t[2];
            _.ops.push(op);
            break;
          }
          if (t[2]) _.ops.pop();
          _.trys.pop();
          continue;
      }
      op = body.call(thisArg, _);
    } catch (e) {
      op = [6, e];
      y = 0;
    } finally {
      f = t = 0;
    }
    if (op[0] & 5) throw op[1];
    return { value: op[0] ? op[1] : void 0, done: true };
  }
};
var __asyncValues = function(o) {
  if (!Symbol.asyncIterator) throw new TypeError("Symbol.asyncIterator is not defined.");
  var m = o[Symbol.asyncIterator], i;
  return m ? m.call(o) : (o = typeof __values === "function" ? __values(o) : o[Symbol.iterator](), i = {}, verb("next"), verb("throw"), verb("return"), i[Symbol.asyncIterator] = function() {
    return this;
  }, i);
  function verb(n) {
    i[n] = o[n] && function(v) {
      return new Promise(function(resolve, reject) {
        v = o[n](v), settle(resolve, reject, v.done, v.value);
      });
    };
  }
  function settle(resolve, reject, d, v) {
    Promise.resolve(v).then(function(v2) {
      resolve({ value: v2, done: d });
    }, reject);
  }
};
var __await = function(v) {
  return this instanceof __await ? (this.v = v, this) : new __await(v);
};
var __asyncGenerator = function(thisArg, _arguments, generator) {
  if (!Symbol.asyncIterator) throw new TypeError("Symbol.asyncIterator is not defined.");
  var g = generator.apply(thisArg, _arguments || []), i, q = [];
  return i = {}, verb("next"), verb("throw"), verb("return"), i[Symbol.asyncIterator] = function() {
    return this;
  }, i;
  function verb(n) {
    if (g[n]) i[n] = function(v) {
      return new Promise(function(a, b) {
        q.push([n, v, a, b]) > 1 || resume(n, v);
      });
    };
  }
  function resume(n, v) {
    try {
      step(g[n](v));
    } catch (e) {
      settle(q[0][3], e);
    }
  }
  function step(r) {
    r.value instanceof __await ? Promise.resolve(r.value.v).then(fulfill, reject) : settle(q[0][2], r);
  }
  function fulfill(value) {
    resume("next", value);
  }
  function reject(value) {
    resume("throw", value);
  }
  function settle(f, v) {
    if (f(v), q.shift(), q.length) resume(q[0][0], q[0][1]);
  }
};
var isValidMapKeyType = function(key) {
  var keyType = typeof key;
  return keyType === "string" || keyType === "number";
};
var HEAD_BYTE_REQUIRED = -1;
var EMPTY_VIEW = new DataView(new ArrayBuffer(0));
var EMPTY_BYTES = new Uint8Array(EMPTY_VIEW.buffer);
var DataViewIndexOutOfBoundsError = (function() {
  try {
    EMPTY_VIEW.getInt8(0);
  } catch (e) {
    return e.constructor;
  }
  throw new Error("never reached");
})();
var MORE_DATA = new DataViewIndexOutOfBoundsError("Insufficient data");
var sharedCachedKeyDecoder = new CachedKeyDecoder();
var Decoder = (
  /** @class */
  (function() {
    function Decoder2(extensionCodec, context, maxStrLength, maxBinLength, maxArrayLength, maxMapLength, maxExtLength, keyDecoder) {
      if (extensionCodec === void 0) {
        extensionCodec = ExtensionCodec.defaultCodec;
      }
      if (context === void 0) {
        context = void 0;
      }
      if (maxStrLength === void 0) {
        maxStrLength = UINT32_MAX;
      }
      if (maxBinLength === void 0) {
        maxBinLength = UINT32_MAX;
      }
      if (maxArrayLength === void 0) {
        maxArrayLength = UINT32_MAX;
      }
      if (maxMapLength === void 0) {
        maxMapLength = UINT32_MAX;
      }
      if (maxExtLength === void 0) {
        maxExtLength = UINT32_MAX;
      }
      if (keyDecoder === void 0) {
        keyDecoder = sharedCachedKeyDecoder;
      }
      this.extensionCodec = extensionCodec;
      this.context = context;
      this.maxStrLength = maxStrLength;
      this.maxBinLength = maxBinLength;
      this.maxArrayLength = maxArrayLength;
      this.maxMapLength = maxMapLength;
      this.maxExtLength = maxExtLength;
      this.keyDecoder = keyDecoder;
      this.totalPos = 0;
      this.pos = 0;
      this.view = EMPTY_VIEW;
      this.bytes = EMPTY_BYTES;
      this.headByte = HEAD_BYTE_REQUIRED;
      this.stack = [];
    }
    Decoder2.prototype.reinitializeState = function() {
      this.totalPos = 0;
      this.headByte = HEAD_BYTE_REQUIRED;
      this.stack.length = 0;
    };
    Decoder2.prototype.setBuffer = function(buffer) {
      this.bytes = ensureUint8Array(buffer);
      this.view = createDataView(this.bytes);
      this.pos = 0;
    };
    Decoder2.prototype.appendBuffer = function(buffer) {
      if (this.headByte === HEAD_BYTE_REQUIRED && !this.hasRemaining(1)) {
        this.setBuffer(buffer);
      } else {
        var remainingData = this.bytes.subarray(this.pos);
        var newData = ensureUint8Array(buffer);
        var newBuffer = new Uint8Array(remainingData.length + newData.length);
        newBuffer.set(remainingData);
        newBuffer.set(newData, remainingData.length);
        this.setBuffer(newBuffer);
      }
    };
    Decoder2.prototype.hasRemaining = function(size) {
      return this.view.byteLength - this.pos >= size;
    };
    Decoder2.prototype.createExtraByteError = function(posToShow) {
      var _a2 = this, view = _a2.view, pos = _a2.pos;
      return new RangeError("Extra ".concat(view.byteLength - pos, " of ").concat(view.byteLength, " byte(s) found at buffer[").concat(posToShow, "]"));
    };
    Decoder2.prototype.decode = function(buffer) {
      this.reinitializeState();
      this.setBuffer(buffer);
      var object = this.doDecodeSync();
      if (this.hasRemaining(1)) {
        throw this.createExtraByteError(this.pos);
      }
      return object;
    };
    Decoder2.prototype.decodeMulti = function(buffer) {
      return __generator(this, function(_a2) {
        switch (_a2.label) {
          case 0:
            this.reinitializeState();
            this.setBuffer(buffer);
            _a2.label = 1;
          case 1:
            if (!this.hasRemaining(1)) return [3, 3];
            return [4, this.doDecodeSync()];
          case 2:
            _a2.sent();
            return [3, 1];
          case 3:
            return [
              2
              /*return*/
            ];
        }
      });
    };
    Decoder2.prototype.decodeAsync = function(stream) {
      var stream_1, stream_1_1;
      var e_1, _a2;
      return __awaiter(this, void 0, void 0, function() {
        var decoded, object, buffer, e_1_1, _b2, headByte, pos, totalPos;
        return __generator(this, function(_c2) {
          switch (_c2.label) {
            case 0:
              decoded = false;
              _c2.label = 1;
            case 1:
              _c2.trys.push([1, 6, 7, 12]);
              stream_1 = __asyncValues(stream);
              _c2.label = 2;
            case 2:
              return [4, stream_1.next()];
            case 3:
              if (!(stream_1_1 = _c2.sent(), !stream_1_1.done)) return [3, 5];
              buffer = stream_1_1.value;
              if (decoded) {
                throw this.createExtraByteError(this.totalPos);
              }
              this.appendBuffer(buffer);
              try {
                object = this.doDecodeSync();
                decoded = true;
              } catch (e) {
                if (!(e instanceof DataViewIndexOutOfBoundsError)) {
                  throw e;
                }
              }
              this.totalPos += this.pos;
              _c2.label = 4;
            case 4:
              return [3, 2];
            case 5:
              return [3, 12];
            case 6:
              e_1_1 = _c2.sent();
              e_1 = { error: e_1_1 };
              return [3, 12];
            case 7:
              _c2.trys.push([7, , 10, 11]);
              if (!(stream_1_1 && !stream_1_1.done && (_a2 = stream_1.return))) return [3, 9];
              return [4, _a2.call(stream_1)];
            case 8:
              _c2.sent();
              _c2.label = 9;
            case 9:
              return [3, 11];
            case 10:
              if (e_1) throw e_1.error;
              return [
                7
                /*endfinally*/
              ];
            case 11:
              return [
                7
                /*endfinally*/
              ];
            case 12:
              if (decoded) {
                if (this.hasRemaining(1)) {
                  throw this.createExtraByteError(this.totalPos);
                }
                return [2, object];
              }
              _b2 = this, headByte = _b2.headByte, pos = _b2.pos, totalPos = _b2.totalPos;
              throw new RangeError("Insufficient data in parsing ".concat(prettyByte(headByte), " at ").concat(totalPos, " (").concat(pos, " in the current buffer)"));
          }
        });
      });
    };
    Decoder2.prototype.decodeArrayStream = function(stream) {
      return this.decodeMultiAsync(stream, true);
    };
    Decoder2.prototype.decodeStream = function(stream) {
      return this.decodeMultiAsync(stream, false);
    };
    Decoder2.prototype.decodeMultiAsync = function(stream, isArray) {
      return __asyncGenerator(this, arguments, function decodeMultiAsync_1() {
        var isArrayHeaderRequired, arrayItemsLeft, stream_2, stream_2_1, buffer, e_2, e_3_1;
        var e_3, _a2;
        return __generator(this, function(_b2) {
          switch (_b2.label) {
            case 0:
              isArrayHeaderRequired = isArray;
              arrayItemsLeft = -1;
              _b2.label = 1;
            case 1:
              _b2.trys.push([1, 13, 14, 19]);
              stream_2 = __asyncValues(stream);
              _b2.label = 2;
            case 2:
              return [4, __await(stream_2.next())];
            case 3:
              if (!(stream_2_1 = _b2.sent(), !stream_2_1.done)) return [3, 12];
              buffer = stream_2_1.value;
              if (isArray && arrayItemsLeft === 0) {
                throw this.createExtraByteError(this.totalPos);
              }
              this.appendBuffer(buffer);
              if (isArrayHeaderRequired) {
                arrayItemsLeft = this.readArraySize();
                isArrayHeaderRequired = false;
                this.complete();
              }
              _b2.label = 4;
            case 4:
              _b2.trys.push([4, 9, , 10]);
              _b2.label = 5;
            case 5:
              if (false) return [3, 8];
              return [4, __await(this.doDecodeSync())];
            case 6:
              return [4, _b2.sent()];
            case 7:
              _b2.sent();
              if (--arrayItemsLeft === 0) {
                return [3, 8];
              }
              return [3, 5];
            case 8:
              return [3, 10];
            case 9:
              e_2 = _b2.sent();
              if (!(e_2 instanceof DataViewIndexOutOfBoundsError)) {
                throw e_2;
              }
              return [3, 10];
            case 10:
              this.totalPos += this.pos;
              _b2.label = 11;
            case 11:
              return [3, 2];
            case 12:
              return [3, 19];
            case 13:
              e_3_1 = _b2.sent();
              e_3 = { error: e_3_1 };
              return [3, 19];
            case 14:
              _b2.trys.push([14, , 17, 18]);
              if (!(stream_2_1 && !stream_2_1.done && (_a2 = stream_2.return))) return [3, 16];
              return [4, __await(_a2.call(stream_2))];
            case 15:
              _b2.sent();
              _b2.label = 16;
            case 16:
              return [3, 18];
            case 17:
              if (e_3) throw e_3.error;
              return [
                7
                /*endfinally*/
              ];
            case 18:
              return [
                7
                /*endfinally*/
              ];
            case 19:
              return [
                2
                /*return*/
              ];
          }
        });
      });
    };
    Decoder2.prototype.doDecodeSync = function() {
      DECODE: while (true) {
        var headByte = this.readHeadByte();
        var object = void 0;
        if (headByte >= 224) {
          object = headByte - 256;
        } else if (headByte < 192) {
          if (headByte < 128) {
            object = headByte;
          } else if (headByte < 144) {
            var size = headByte - 128;
            if (size !== 0) {
              this.pushMapState(size);
              this.complete();
              continue DECODE;
            } else {
              object = {};
            }
          } else if (headByte < 160) {
            var size = headByte - 144;
            if (size !== 0) {
              this.pushArrayState(size);
              this.complete();
              continue DECODE;
            } else {
              object = [];
            }
          } else {
            var byteLength = headByte - 160;
            object = this.decodeUtf8String(byteLength, 0);
          }
        } else if (headByte === 192) {
          object = null;
        } else if (headByte === 194) {
          object = false;
        } else if (headByte === 195) {
          object = true;
        } else if (headByte === 202) {
          object = this.readF32();
        } else if (headByte === 203) {
          object = this.readF64();
        } else if (headByte === 204) {
          object = this.readU8();
        } else if (headByte === 205) {
          object = this.readU16();
        } else if (headByte === 206) {
          object = this.readU32();
        } else if (headByte === 207) {
          object = this.readU64();
        } else if (headByte === 208) {
          object = this.readI8();
        } else if (headByte === 209) {
          object = this.readI16();
        } else if (headByte === 210) {
          object = this.readI32();
        } else if (headByte === 211) {
          object = this.readI64();
        } else if (headByte === 217) {
          var byteLength = this.lookU8();
          object = this.decodeUtf8String(byteLength, 1);
        } else if (headByte === 218) {
          var byteLength = this.lookU16();
          object = this.decodeUtf8String(byteLength, 2);
        } else if (headByte === 219) {
          var byteLength = this.lookU32();
          object = this.decodeUtf8String(byteLength, 4);
        } else if (headByte === 220) {
          var size = this.readU16();
          if (size !== 0) {
            this.pushArrayState(size);
            this.complete();
            continue DECODE;
          } else {
            object = [];
          }
        } else if (headByte === 221) {
          var size = this.readU32();
          if (size !== 0) {
            this.pushArrayState(size);
            this.complete();
            continue DECODE;
          } else {
            object = [];
          }
        } else if (headByte === 222) {
          var size = this.readU16();
          if (size !== 0) {
            this.pushMapState(size);
            this.complete();
            continue DECODE;
          } else {
            object = {};
          }
        } else if (headByte === 223) {
          var size = this.readU32();
          if (size !== 0) {
            this.pushMapState(size);
            this.complete();
            continue DECODE;
          } else {
            object = {};
          }
        } else if (headByte === 196) {
          var size = this.lookU8();
          object = this.decodeBinary(size, 1);
        } else if (headByte === 197) {
          var size = this.lookU16();
          object = this.decodeBinary(size, 2);
        } else if (headByte === 198) {
          var size = this.lookU32();
          object = this.decodeBinary(size, 4);
        } else if (headByte === 212) {
          object = this.decodeExtension(1, 0);
        } else if (headByte === 213) {
          object = this.decodeExtension(2, 0);
        } else if (headByte === 214) {
          object = this.decodeExtension(4, 0);
        } else if (headByte === 215) {
          object = this.decodeExtension(8, 0);
        } else if (headByte === 216) {
          object = this.decodeExtension(16, 0);
        } else if (headByte === 199) {
          var size = this.lookU8();
          object = this.decodeExtension(size, 1);
        } else if (headByte === 200) {
          var size = this.lookU16();
          object = this.decodeExtension(size, 2);
        } else if (headByte === 201) {
          var size = this.lookU32();
          object = this.decodeExtension(size, 4);
        } else {
          throw new DecodeError("Unrecognized type byte: ".concat(prettyByte(headByte)));
        }
        this.complete();
        var stack = this.stack;
        while (stack.length > 0) {
          var state = stack[stack.length - 1];
          if (state.type === 0) {
            state.array[state.position] = object;
            state.position++;
            if (state.position === state.size) {
              stack.pop();
              object = state.array;
            } else {
              continue DECODE;
            }
          } else if (state.type === 1) {
            if (!isValidMapKeyType(object)) {
              throw new DecodeError("The type of key must be string or number but " + typeof object);
            }
            if (object === "__proto__") {
              throw new DecodeError("The key __proto__ is not allowed");
            }
            state.key = object;
            state.type = 2;
            continue DECODE;
          } else {
            state.map[state.key] = object;
            state.readCount++;
            if (state.readCount === state.size) {
              stack.pop();
              object = state.map;
            } else {
              state.key = null;
              state.type = 1;
              continue DECODE;
            }
          }
        }
        return object;
      }
    };
    Decoder2.prototype.readHeadByte = function() {
      if (this.headByte === HEAD_BYTE_REQUIRED) {
        this.headByte = this.readU8();
      }
      return this.headByte;
    };
    Decoder2.prototype.complete = function() {
      this.headByte = HEAD_BYTE_REQUIRED;
    };
    Decoder2.prototype.readArraySize = function() {
      var headByte = this.readHeadByte();
      switch (headByte) {
        case 220:
          return this.readU16();
        case 221:
          return this.readU32();
        default: {
          if (headByte < 160) {
            return headByte - 144;
          } else {
            throw new DecodeError("Unrecognized array type byte: ".concat(prettyByte(headByte)));
          }
        }
      }
    };
    Decoder2.prototype.pushMapState = function(size) {
      if (size > this.maxMapLength) {
        throw new DecodeError("Max length exceeded: map length (".concat(size, ") > maxMapLengthLength (").concat(this.maxMapLength, ")"));
      }
      this.stack.push({
        type: 1,
        size,
        key: null,
        readCount: 0,
        map: {}
      });
    };
    Decoder2.prototype.pushArrayState = function(size) {
      if (size > this.maxArrayLength) {
        throw new DecodeError("Max length exceeded: array length (".concat(size, ") > maxArrayLength (").concat(this.maxArrayLength, ")"));
      }
      this.stack.push({
        type: 0,
        size,
        array: new Array(size),
        position: 0
      });
    };
    Decoder2.prototype.decodeUtf8String = function(byteLength, headerOffset) {
      var _a2;
      if (byteLength > this.maxStrLength) {
        throw new DecodeError("Max length exceeded: UTF-8 byte length (".concat(byteLength, ") > maxStrLength (").concat(this.maxStrLength, ")"));
      }
      if (this.bytes.byteLength < this.pos + headerOffset + byteLength) {
        throw MORE_DATA;
      }
      var offset = this.pos + headerOffset;
      var object;
      if (this.stateIsMapKey() && ((_a2 = this.keyDecoder) === null || _a2 === void 0 ? void 0 : _a2.canBeCached(byteLength))) {
        object = this.keyDecoder.decode(this.bytes, offset, byteLength);
      } else if (byteLength > TEXT_DECODER_THRESHOLD) {
        object = utf8DecodeTD(this.bytes, offset, byteLength);
      } else {
        object = utf8DecodeJs(this.bytes, offset, byteLength);
      }
      this.pos += headerOffset + byteLength;
      return object;
    };
    Decoder2.prototype.stateIsMapKey = function() {
      if (this.stack.length > 0) {
        var state = this.stack[this.stack.length - 1];
        return state.type === 1;
      }
      return false;
    };
    Decoder2.prototype.decodeBinary = function(byteLength, headOffset) {
      if (byteLength > this.maxBinLength) {
        throw new DecodeError("Max length exceeded: bin length (".concat(byteLength, ") > maxBinLength (").concat(this.maxBinLength, ")"));
      }
      if (!this.hasRemaining(byteLength + headOffset)) {
        throw MORE_DATA;
      }
      var offset = this.pos + headOffset;
      var object = this.bytes.subarray(offset, offset + byteLength);
      this.pos += headOffset + byteLength;
      return object;
    };
    Decoder2.prototype.decodeExtension = function(size, headOffset) {
      if (size > this.maxExtLength) {
        throw new DecodeError("Max length exceeded: ext length (".concat(size, ") > maxExtLength (").concat(this.maxExtLength, ")"));
      }
      var extType = this.view.getInt8(this.pos + headOffset);
      var data = this.decodeBinary(
        size,
        headOffset + 1
        /* extType */
      );
      return this.extensionCodec.decode(data, extType, this.context);
    };
    Decoder2.prototype.lookU8 = function() {
      return this.view.getUint8(this.pos);
    };
    Decoder2.prototype.lookU16 = function() {
      return this.view.getUint16(this.pos);
    };
    Decoder2.prototype.lookU32 = function() {
      return this.view.getUint32(this.pos);
    };
    Decoder2.prototype.readU8 = function() {
      var value = this.view.getUint8(this.pos);
      this.pos++;
      return value;
    };
    Decoder2.prototype.readI8 = function() {
      var value = this.view.getInt8(this.pos);
      this.pos++;
      return value;
    };
    Decoder2.prototype.readU16 = function() {
      var value = this.view.getUint16(this.pos);
      this.pos += 2;
      return value;
    };
    Decoder2.prototype.readI16 = function() {
      var value = this.view.getInt16(this.pos);
      this.pos += 2;
      return value;
    };
    Decoder2.prototype.readU32 = function() {
      var value = this.view.getUint32(this.pos);
      this.pos += 4;
      return value;
    };
    Decoder2.prototype.readI32 = function() {
      var value = this.view.getInt32(this.pos);
      this.pos += 4;
      return value;
    };
    Decoder2.prototype.readU64 = function() {
      var value = getUint64(this.view, this.pos);
      this.pos += 8;
      return value;
    };
    Decoder2.prototype.readI64 = function() {
      var value = getInt64(this.view, this.pos);
      this.pos += 8;
      return value;
    };
    Decoder2.prototype.readF32 = function() {
      var value = this.view.getFloat32(this.pos);
      this.pos += 4;
      return value;
    };
    Decoder2.prototype.readF64 = function() {
      var value = this.view.getFloat64(this.pos);
      this.pos += 8;
      return value;
    };
    return Decoder2;
  })()
);

// src/errors.ts
var RtClientError = class extends Error {
  constructor() {
    super(...arguments);
    this.name = "RtClientError";
  }
};
var RtError = class extends RtClientError {
  constructor(code, message, retryAfter) {
    super(`${code}: ${message}`);
    this.code = code;
    this.retryAfter = retryAfter;
    this.name = "RtError";
  }
};
var ConnectionLost = class extends RtClientError {
  constructor() {
    super(...arguments);
    this.name = "ConnectionLost";
  }
};
var TextMismatch = class extends RtClientError {
  constructor(result2, detail) {
    super(`turn ${result2.tid}: ${detail}`);
    this.result = result2;
    this.detail = detail;
    this.name = "TextMismatch";
  }
};
var ProtocolError = class extends RtClientError {
  constructor(code, message) {
    super(`${code}: ${message}`);
    this.code = code;
    this.name = "ProtocolError";
  }
};
var AbortError = class extends RtClientError {
  constructor() {
    super(...arguments);
    this.name = "AbortError";
  }
};

// src/frames.ts
var SUBPROTOCOL_MSGPACK = "rt.v1.msgpack";
var SUBPROTOCOL_JSON = "rt.v1.json";

// src/codec.ts
function compact(frame) {
  const out = { t: frame.t };
  for (const key of Object.keys(frame)) {
    const value = frame[key];
    if (value !== null && value !== void 0) out[key] = value;
  }
  return out;
}
function asFrame(value) {
  if (value === null || typeof value !== "object" || Array.isArray(value) || typeof value.t !== "string") {
    throw new ProtocolError("bad_frame", "a frame is a map with a string t");
  }
  return value;
}
function bytesOf(data) {
  if (data instanceof Uint8Array) return data;
  if (data instanceof ArrayBuffer) return new Uint8Array(data);
  if (ArrayBuffer.isView(data)) return new Uint8Array(data.buffer, data.byteOffset, data.byteLength);
  return null;
}
var MsgpackCodec = class {
  constructor() {
    this.subprotocol = SUBPROTOCOL_MSGPACK;
    this.binary = true;
    // One encoder and decoder, reused: they keep their buffers and the decoder's string cache.
    this.encoder = new Encoder();
    this.decoder = new Decoder();
  }
  encode(frame) {
    return this.encoder.encode(frame);
  }
  decode(data) {
    const bytes = bytesOf(data);
    if (bytes === null) throw new ProtocolError("bad_frame", "rt.v1.msgpack takes binary frames; this one was text");
    let value;
    try {
      value = this.decoder.decode(bytes);
    } catch (exc) {
      throw new ProtocolError("bad_frame", `not valid msgpack: ${exc.message}`);
    }
    return asFrame(value);
  }
};
var JsonCodec = class {
  constructor() {
    this.subprotocol = SUBPROTOCOL_JSON;
    this.binary = false;
  }
  encode(frame) {
    return JSON.stringify(frame);
  }
  decode(data) {
    if (typeof data !== "string") throw new ProtocolError("bad_frame", "rt.v1.json takes text frames; this one was binary");
    let value;
    try {
      value = JSON.parse(data);
    } catch (exc) {
      throw new ProtocolError("bad_frame", `not valid JSON: ${exc.message}`);
    }
    return asFrame(value);
  }
};
function codecFor(subprotocol) {
  if (subprotocol === SUBPROTOCOL_MSGPACK) return new MsgpackCodec();
  if (subprotocol === SUBPROTOCOL_JSON) return new JsonCodec();
  throw new TypeError(`unknown subprotocol ${JSON.stringify(subprotocol)}; use rt.v1.msgpack or rt.v1.json`);
}

// src/emitter.ts
var Emitter = class {
  constructor() {
    this.listeners = /* @__PURE__ */ new Map();
  }
  /** Calls `fn` on each `event`; returns the function that stops it. */
  on(event, fn) {
    let set = this.listeners.get(event);
    if (set === void 0) this.listeners.set(event, set = /* @__PURE__ */ new Set());
    set.add(fn);
    return () => set.delete(fn);
  }
  emit(event, value) {
    const set = this.listeners.get(event);
    if (set === void 0) return;
    for (const fn of [...set]) {
      try {
        fn(value);
      } catch {
      }
    }
  }
  hasListeners(event) {
    return (this.listeners.get(event)?.size ?? 0) > 0;
  }
};

// src/host.ts
function defaultWebSocket() {
  const ws = globalThis.WebSocket;
  if (ws === void 0) {
    throw new TypeError("no global WebSocket: pass one, e.g. new Client(url, { WebSocket }) with WebSocket from 'ws'");
  }
  return ws;
}
function sleep(seconds) {
  return new Promise((resolve) => setTimeout(resolve, seconds * 1e3));
}
function timer(seconds, fn) {
  const handle = setTimeout(fn, seconds * 1e3);
  return () => clearTimeout(handle);
}

// src/handshake.ts
function handshake(h) {
  return new Promise((resolve, reject) => {
    const ws = new h.WebSocket(h.url, [h.codec.subprotocol]);
    ws.binaryType = "arraybuffer";
    let settled = false;
    const fail = (error) => {
      if (settled) return;
      settled = true;
      stop();
      ws.onopen = ws.onmessage = ws.onclose = ws.onerror = null;
      try {
        ws.close();
      } catch {
      }
      reject(error);
    };
    const stop = timer(h.openTimeout, () => fail(new ConnectionLost("no welcome in time")));
    ws.onerror = () => {
    };
    ws.onclose = (ev) => fail(new ConnectionLost(`closed before welcome (${ev.code} ${ev.reason})`));
    ws.onopen = () => {
      const hello = { t: "hello", client: h.name, version: h.version };
      if (h.token !== void 0) hello.token = h.token;
      ws.send(h.codec.encode(hello));
    };
    ws.onmessage = (ev) => {
      let f;
      try {
        f = h.codec.decode(ev.data);
      } catch (exc) {
        fail(exc);
        return;
      }
      if (f.t !== "welcome") {
        fail(new RtError(f.code ?? "bad_frame", f.msg ?? "expected welcome"));
        return;
      }
      settled = true;
      stop();
      ws.onopen = ws.onmessage = ws.onclose = null;
      resolve({ ws, welcome: f });
    };
  });
}

// src/sequence.ts
var GapError = class extends Error {
  constructor(expected, got) {
    super(`expected seq ${expected}, got ${got}`);
    this.expected = expected;
    this.got = got;
    this.name = "GapError";
  }
};
var SeqTracker = class {
  constructor(epoch, lastSeq) {
    this.epoch = epoch;
    this.lastSeq = lastSeq;
  }
  /** A `session` frame that was not a recovery: start over at its epoch and seq. */
  reset(epoch, seq) {
    this.epoch = epoch;
    this.lastSeq = seq;
  }
  /** True if the frame is new and next in line; false if already seen; GapError if frames are missing. */
  accept(seq) {
    if (seq <= this.lastSeq) return false;
    if (seq !== this.lastSeq + 1) throw new GapError(this.lastSeq + 1, seq);
    this.lastSeq = seq;
    return true;
  }
};

// src/textcheck.ts
var TABLE = (() => {
  const table = new Uint32Array(256);
  for (let n = 0; n < 256; n++) {
    let c = n;
    for (let k = 0; k < 8; k++) c = c & 1 ? 3988292384 ^ c >>> 1 : c >>> 1;
    table[n] = c >>> 0;
  }
  return table;
})();
function textCheck(text) {
  let crc = 4294967295;
  let len = 0;
  const put = (byte) => {
    crc = TABLE[(crc ^ byte) & 255] ^ crc >>> 8;
    len++;
  };
  for (let i = 0; i < text.length; i++) {
    let cp = text.charCodeAt(i);
    if (cp >= 55296 && cp <= 56319 && i + 1 < text.length) {
      const lo = text.charCodeAt(i + 1);
      if (lo >= 56320 && lo <= 57343) {
        cp = 65536 + (cp - 55296 << 10) + (lo - 56320);
        i++;
      }
    }
    if (cp >= 55296 && cp <= 57343) cp = 65533;
    if (cp < 128) put(cp);
    else if (cp < 2048) {
      put(192 | cp >> 6);
      put(128 | cp & 63);
    } else if (cp < 65536) {
      put(224 | cp >> 12);
      put(128 | cp >> 6 & 63);
      put(128 | cp & 63);
    } else {
      put(240 | cp >> 18);
      put(128 | cp >> 12 & 63);
      put(128 | cp >> 6 & 63);
      put(128 | cp & 63);
    }
  }
  return [len, (crc ^ 4294967295) >>> 0];
}
function mismatch(text, end) {
  const [xlen, xcrc] = textCheck(text);
  if (end.xlen != null && end.xlen !== xlen) return `the text is ${xlen} UTF-8 bytes; turn.end says ${end.xlen}`;
  if (end.xcrc != null && end.xcrc !== xcrc) return `the text's CRC-32 is ${xcrc}; turn.end says ${end.xcrc}`;
  return null;
}

// src/turn.ts
function deferred() {
  let resolve;
  let reject;
  const promise = new Promise((res, rej) => {
    resolve = res;
    reject = rej;
  });
  promise.catch(() => {
  });
  return { promise, resolve, reject };
}
var Turn = class {
  constructor(kind, frame, owner) {
    this.kind = kind;
    this.frame = frame;
    this.owner = owner;
    this.tid = null;
    this.parent = null;
    /** The reply so far. */
    this.text = "";
    /** Set by `cancel()` before the server started the turn: cancel as soon as it starts. */
    this.cancelRequested = false;
    this.start = deferred();
    this.end = deferred();
    this.pieces = [];
    this.wake = null;
    this.finished = false;
    this.failure = null;
    this.started = this.start.promise;
    this.result = this.end.promise;
  }
  get done() {
    return this.finished;
  }
  /** Stops the turn (it ends with reason "cancelled"); does nothing once it ended. */
  cancel() {
    if (this.finished || this.owner === null) return Promise.resolve();
    if (this.tid === null) {
      this.cancelRequested = true;
      return Promise.resolve();
    }
    return this.owner.cancelTurn(this);
  }
  async *[Symbol.asyncIterator]() {
    for (; ; ) {
      if (this.pieces.length > 0) {
        const batch = this.pieces;
        this.pieces = [];
        yield* batch;
        continue;
      }
      if (this.finished) break;
      await new Promise((resolve) => this.wake = resolve);
    }
    if (this.failure !== null) throw this.failure;
  }
  // --- fed by the session ---------------------------------------------------------------------------------------
  _start(tid, parent) {
    this.tid = tid;
    this.parent = parent;
    this.start.resolve(tid);
  }
  _feed(piece) {
    this.text += piece;
    this.pieces.push(piece);
    this.poke();
  }
  /** Delivers what a snapshot holds beyond what was already delivered. */
  _catchUp(full) {
    if (full.length > this.text.length && full.startsWith(this.text)) this._feed(full.slice(this.text.length));
  }
  _end(result2) {
    if (this.finished) return;
    this.finished = true;
    this.end.resolve(result2);
    this.poke();
  }
  _fail(error) {
    if (this.finished) return;
    this.finished = true;
    this.failure = error;
    this.start.reject(error);
    this.end.reject(error);
    this.poke();
  }
  poke() {
    const wake = this.wake;
    this.wake = null;
    wake?.();
  }
};

// src/session.ts
var Session = class extends Emitter {
  constructor(link, frame) {
    super();
    this.link = link;
    this.closed = false;
    this.turns = /* @__PURE__ */ new Map();
    // by tid, while running
    this.pending = /* @__PURE__ */ new Map();
    // by frame id, until turn.start
    this.resendAfter = null;
    this.sid = frame.sid;
    this.tracker = new SeqTracker(frame.ep, frame.seq);
    this.state = frame.state;
    this.snapshot = frame.snap ?? null;
  }
  // --- operations ----------------------------------------------------------------------------------------------
  /** Starts a turn: iterate the returned Turn for the reply's pieces, await `turn.result` for its end. */
  say(text, options = {}) {
    const { params, interrupt, schema, grammar, signal } = options;
    return this.turn("say", { text, params, interrupt: interrupt || void 0, schema, grammar }, signal);
  }
  /** A new alternative for the last reply; the head moves to it. */
  regenerate(options = {}) {
    return this.turn("regenerate", { params: options.params }, options.signal);
  }
  /** Extends the last reply; the turn's text is the continuation only. */
  continue(options = {}) {
    return this.turn("continue", { params: options.params }, options.signal);
  }
  /** Stops the running turn; resolves on its turn.end. Rejects with RtError no_turn if none runs. */
  async cancel() {
    await this.link.request({ t: "cancel", sid: this.sid }, "turn.end");
  }
  /** Moves the head back to turn `tid` (0: before the first turn); resolves with the new state. */
  async rollback(tid) {
    const f = await this.link.request({ t: "rollback", sid: this.sid, tid }, "session.updated");
    return f.state;
  }
  /** Changes persona and/or default parameters; resolves with the full effective state. */
  async update(changes) {
    const f = await this.link.request({ t: "session.update", sid: this.sid, ...changes }, "session.updated");
    return f.state;
  }
  /** Reads the session as it is now (state and snapshot: the history's text of each turn on the active path). */
  async refresh() {
    const f = await this.link.request({ t: "session.open", sid: this.sid, snapshot: true });
    this.state = f.state;
    this.snapshot = f.snap ?? null;
    return this.snapshot ?? { turns: [], running: null };
  }
  /** Ends the session for good (the server deletes it). */
  async close() {
    await this.link.request({ t: "session.close", sid: this.sid }, "session.closed");
    this.markClosed();
  }
  /** For Turn.cancel: cancel this turn if it is still the one running. */
  async cancelTurn(turn) {
    if (turn.done || this.state.running !== turn.tid) return;
    try {
      await this.cancel();
    } catch (exc) {
      if (!(exc instanceof RtError && exc.code === "no_turn")) throw exc;
    }
  }
  turn(kind, fields, signal) {
    const id = this.link.nextId();
    const frame = compact({ t: kind, id, sid: this.sid, ...fields });
    const turn = new Turn(kind, frame, this);
    if (signal?.aborted) {
      turn._fail(new AbortError("the signal was aborted before the turn was sent"));
      return turn;
    }
    this.pending.set(id, turn);
    signal?.addEventListener("abort", () => void turn.cancel().catch(() => {
    }), { once: true });
    this.link.sendTurn(frame);
    return turn;
  }
  // --- frames --------------------------------------------------------------------------------------------------
  /** A frame of this session (throws GapError when frames were lost on a live connection). */
  _onFrame(f) {
    if (!this.tracker.accept(f.seq)) return;
    switch (f.t) {
      case "turn.start": {
        const tid = f.tid;
        let turn = f.id !== void 0 ? this.pending.get(f.id) : void 0;
        if (turn !== void 0) this.pending.delete(f.id);
        else turn = new Turn(f.kind, { t: f.kind }, this);
        turn._start(tid, f.parent);
        this.turns.set(tid, turn);
        this.state.running = tid;
        this.emit("turn", turn);
        if (turn.cancelRequested) void turn.cancel().catch(() => {
        });
        break;
      }
      case "delta":
        this.turns.get(f.tid)?._feed(f.x);
        break;
      case "turn.end": {
        const turn = this.turns.get(f.tid);
        this.turns.delete(f.tid);
        this.state.running = null;
        if (f.code !== "store_failed") this.state.head = f.tid;
        if (turn !== void 0) endTurn(turn, f);
        break;
      }
      case "session.updated":
        this.state = f.state;
        this.emit("state", this.state);
        break;
      case "session.closed":
        this.markClosed();
        break;
    }
    if (this.resendAfter !== null && f.seq >= this.resendAfter) this.resendUnstarted();
  }
  /** The server's answer to session.resume after a reconnect. */
  _onResumed(f) {
    if (f.recovered) {
      if (f.seq <= this.tracker.lastSeq) this.resendUnstarted();
      else this.resendAfter = f.seq;
      this.emit("resumed", { recovered: true });
      return;
    }
    this.tracker.reset(f.ep, f.seq);
    this.state = f.state;
    this.snapshot = f.snap ?? null;
    const snap = f.snap ?? { turns: [], running: null };
    const done = new Map(snap.turns.map((t) => [t.tid, t]));
    const running = snap.running;
    for (const [tid, turn] of [...this.turns]) {
      const node = done.get(tid);
      if (running !== null && running.tid === tid) {
        turn._catchUp(running.text);
        continue;
      }
      this.turns.delete(tid);
      if (node !== void 0) {
        turn._catchUp(node.reply);
        turn._end(result(tid, node.reason, turn.text, { usage: node.usage ?? {} }));
      } else {
        turn._end(result(tid, "cancelled", turn.text, { error: "lost with the server's frame log" }));
      }
    }
    if (running !== null && !this.turns.has(running.tid)) {
      for (const [id, turn] of this.pending) {
        if (turn.kind === running.kind && (turn.frame.text ?? null) === (running.user ?? null)) {
          this.pending.delete(id);
          turn._start(running.tid, running.parent);
          turn._catchUp(running.text);
          this.turns.set(running.tid, turn);
          break;
        }
      }
    }
    this.emit("resumed", { recovered: false, why: f.why });
    this.resendUnstarted();
  }
  /** The session is gone: closed here or elsewhere, or unknown to the server on resume. */
  markClosed(error) {
    if (this.closed) return;
    this.closed = true;
    this.link.forget(this.sid);
    const failure = error ?? new RtError("unknown_session", "the session was closed");
    for (const turn of [...this.pending.values(), ...this.turns.values()]) turn._fail(failure);
    this.pending.clear();
    this.turns.clear();
    this.emit("closed", error === void 0 ? {} : { error });
  }
  /** Fails every turn (the connection is gone for good). */
  _failAll(error) {
    for (const turn of [...this.pending.values(), ...this.turns.values()]) turn._fail(error);
  }
  /** A request with this frame id was refused: if it was a turn, the turn fails. */
  _refused(id, error) {
    const turn = this.pending.get(id);
    if (turn === void 0) return false;
    this.pending.delete(id);
    turn._fail(error);
    return true;
  }
  resendUnstarted() {
    this.resendAfter = null;
    for (const turn of this.pending.values()) this.link.sendTurn(turn.frame);
  }
};
function result(tid, reason, text, extra) {
  return { tid, reason, text, usage: {}, timings: {}, cache: "miss", ...extra };
}
function endTurn(turn, f) {
  const r = result(f.tid, f.reason, turn.text, {
    usage: f.usage ?? {},
    timings: f.timings ?? {},
    cache: f.cache ?? "miss"
  });
  if (f.error != null) r.error = f.error;
  if (f.parsed != null) r.parsed = f.parsed;
  if (f.code != null) r.code = f.code;
  const problem = mismatch(turn.text, f);
  if (problem === null) turn._end(r);
  else turn._fail(new TextMismatch(r, problem));
}

// src/client.ts
var VERSION = "0.1.0";
var NO_RECONNECT = /* @__PURE__ */ new Set([1008]);
var Client = class _Client extends Emitter {
  // requests made while reconnecting, sent once resumed
  constructor(url, options = {}) {
    super();
    this.url = url;
    this.options = options;
    this.sessions = /* @__PURE__ */ new Map();
    this.welcome = null;
    this.reconnects = 0;
    this.state = "connecting";
    this.stopKeepalive = () => {
    };
    this.heard = 0;
    // when the socket last delivered a frame (ms)
    this.ws = null;
    this.socketNo = 0;
    // which socket this is (1, 2, ...): replies to requests sent on an older one will not come
    this.ids = 0;
    this.waiting = /* @__PURE__ */ new Map();
    this.resuming = /* @__PURE__ */ new Map();
    this.outbox = [];
    this.WS = options.WebSocket ?? defaultWebSocket();
    this.codec = codecFor(options.subprotocol ?? SUBPROTOCOL_MSGPACK);
    const b = options.backoff;
    this.backoff = b instanceof Backoff ? b : new Backoff(b);
    this.sleep = options.sleep ?? sleep;
    this.timer = options.timer ?? timer;
    this.now = options.now ?? Date.now;
  }
  /** A connected client. */
  static async connect(url, options = {}) {
    const client = new _Client(url, options);
    await client.connect();
    return client;
  }
  get subprotocol() {
    return this.codec.subprotocol;
  }
  async connect() {
    try {
      await this.openSocket();
    } catch (exc) {
      this.state = "closed";
      throw exc;
    }
    this.state = "open";
    this.emit("open", { welcome: this.welcome, reconnects: 0 });
  }
  /** Opens a new session. */
  async open(options = {}) {
    const reply = await this.request({ t: "session.open", ...options });
    return this.adopt(reply);
  }
  /** Joins an existing session (another device, a spectator); `session.snapshot` holds its history. */
  async attach(sid) {
    return this.adopt(await this.request({ t: "session.open", sid }));
  }
  /** Seconds for a ping's round trip. */
  async ping() {
    const t0 = Date.now();
    await this.request({ t: "ping" }, "pong");
    return (Date.now() - t0) / 1e3;
  }
  /** Closes the connection for good: every turn still running fails with ConnectionLost. */
  close() {
    if (this.state === "closed") return;
    const ws = this.ws;
    this.ws = null;
    this.stopKeepalive();
    ws?.close(1e3, "client closed");
    this.giveUp(new ConnectionLost("client closed"));
  }
  /** Closes the socket as if the network dropped it: the client reconnects and resumes (tests, demos). */
  dropConnection() {
    this.ws?.close(4e3, "dropped by the application");
  }
  // --- Link: what sessions use -----------------------------------------------------------------------------------
  nextId() {
    return ++this.ids;
  }
  sendTurn(frame) {
    if (this.state === "open") this.sendNow(frame);
  }
  request(frame, expect = "session") {
    if (this.state === "closed") return Promise.reject(new ConnectionLost("the client is closed"));
    const id = frame.id = this.nextId();
    return new Promise((resolve, reject) => {
      const waiter = { resolve, reject, expect, socket: 0 };
      if (typeof frame.sid === "string") waiter.sid = frame.sid;
      this.waiting.set(id, waiter);
      if (this.state === "open") {
        waiter.socket = this.socketNo;
        this.sendNow(frame);
      } else {
        this.outbox.push(frame);
      }
    });
  }
  forget(sid) {
    this.sessions.delete(sid);
  }
  // --- connection ----------------------------------------------------------------------------------------------
  adopt(reply) {
    const session = new Session(this, reply);
    this.sessions.set(session.sid, session);
    return session;
  }
  sendNow(frame) {
    try {
      this.ws?.send(this.codec.encode(compact(frame)));
    } catch {
    }
  }
  /** Opens a socket, says hello and waits for welcome; on success it becomes the client's socket. */
  async openSocket() {
    const { token, name, openTimeout } = this.options;
    const { ws, welcome } = await handshake({
      url: this.url,
      WebSocket: this.WS,
      codec: this.codec,
      name: name ?? "rtclient-js",
      version: VERSION,
      token: typeof token === "function" ? await token() : token,
      openTimeout: openTimeout ?? 10
    });
    this.welcome = welcome;
    this.ws = ws;
    this.socketNo++;
    this.heard = this.now();
    ws.onmessage = (e) => this.onMessage(ws, e.data);
    ws.onclose = (e) => this.onClose(ws, e.code, e.reason);
    this.keepalive(ws, this.options.keepalive ?? welcome.hb);
  }
  /** Every `seconds`, a ping; a socket from which nothing came for two periods is dropped (a browser cannot see
   * the server's WebSocket pings go unanswered, so a half-open connection is found this way). 0: off. */
  keepalive(ws, seconds) {
    if (!(seconds > 0)) return;
    const tick = () => {
      if (ws !== this.ws) return;
      if (this.now() - this.heard > 2 * seconds * 1e3) {
        this.dropConnection();
        return;
      }
      this.sendNow({ t: "ping" });
      this.stopKeepalive = this.timer(seconds, tick);
    };
    this.stopKeepalive = this.timer(seconds, tick);
  }
  onMessage(ws, data) {
    if (ws !== this.ws) return;
    this.heard = this.now();
    let f;
    try {
      f = this.codec.decode(data);
    } catch (exc) {
      if (exc instanceof ProtocolError) return;
      throw exc;
    }
    if (this.hasListeners("frame")) this.emit("frame", f);
    try {
      this.onFrame(f);
    } catch (exc) {
      if (!(exc instanceof GapError)) throw exc;
      this.dropConnection();
    }
  }
  onClose(ws, code, reason) {
    if (ws !== this.ws) return;
    this.ws = null;
    this.stopKeepalive();
    if (this.isClosed()) return;
    this.emit("disconnected", { code, reason });
    if (this.options.reconnect === false || NO_RECONNECT.has(code)) {
      this.giveUp(new ConnectionLost(`connection closed (${code} ${reason})`));
      return;
    }
    this.state = "reconnecting";
    void this.reconnect();
  }
  async reconnect() {
    let attempt = 0;
    for (const delay of this.backoff.delays()) {
      attempt++;
      this.emit("reconnecting", { attempt, delay });
      await this.sleep(delay);
      if (this.isClosed()) return;
      try {
        await this.openSocket();
      } catch {
        if (this.isClosed()) return;
        continue;
      }
      if (this.isClosed()) {
        this.ws?.close(1e3, "client closed");
        return;
      }
      this.resumed();
      return;
    }
    this.giveUp(new ConnectionLost("could not reconnect"));
  }
  /** A new socket is open: fail what the old one took with it, resume every session, send what waited. */
  resumed() {
    this.reconnects++;
    for (const [id, w] of this.waiting) {
      if (w.socket !== 0) {
        this.waiting.delete(id);
        w.reject(new ConnectionLost("the connection dropped before the reply"));
      }
    }
    this.resuming.clear();
    for (const s of this.sessions.values()) {
      const id = this.nextId();
      this.resuming.set(id, s);
      this.sendNow({ t: "session.resume", id, sid: s.sid, ep: s.tracker.epoch, last_seq: s.tracker.lastSeq });
    }
    this.state = "open";
    const queued = this.outbox;
    this.outbox = [];
    for (const frame of queued) {
      const w = this.waiting.get(frame.id);
      if (w !== void 0) w.socket = this.socketNo;
      this.sendNow(frame);
    }
    this.emit("open", { welcome: this.welcome, reconnects: this.reconnects });
  }
  /** A method, not a comparison of `state`: it changes while reconnect() awaits. */
  isClosed() {
    return this.state === "closed";
  }
  giveUp(error) {
    this.state = "closed";
    for (const w of this.waiting.values()) w.reject(error);
    this.waiting.clear();
    this.outbox = [];
    for (const s of this.sessions.values()) s._failAll(error);
    this.emit("closed", { error });
  }
  // --- frames ----------------------------------------------------------------------------------------------------
  onFrame(f) {
    const id = f.id;
    if (id !== void 0 && this.resuming.has(id)) {
      const session = this.resuming.get(id);
      this.resuming.delete(id);
      if (f.t === "session") session._onResumed(f);
      else session.markClosed(new RtError(f.code ?? "unknown_session", f.msg ?? ""));
      return;
    }
    if (f.t === "error") {
      const e = f;
      const error = new RtError(e.code, e.msg ?? "", e.retry_after);
      if (id === void 0) return;
      for (const s of this.sessions.values()) if (s._refused(id, error)) return;
      this.settle(id, null, error);
      return;
    }
    if (f.t === "session") {
      if (id !== void 0) this.settle(id, f, null);
      return;
    }
    if (typeof f.seq === "number" && typeof f.sid === "string") {
      this.sessions.get(f.sid)?._onFrame(f);
      if (f.t === "turn.end" || f.t === "session.updated" || f.t === "session.closed") this.ack(f);
      return;
    }
    if (id !== void 0) this.settle(id, f, null);
  }
  /** Requests answered by a session frame (cancel: turn.end; rollback, update: session.updated; close) end on it. */
  ack(f) {
    for (const [id, w] of this.waiting) {
      if (w.sid === f.sid && w.expect === f.t && w.socket !== 0) {
        this.settle(id, f, null);
        return;
      }
    }
  }
  settle(id, f, error) {
    const w = this.waiting.get(id);
    if (w === void 0) return;
    this.waiting.delete(id);
    if (error !== null) w.reject(error);
    else w.resolve(f);
  }
};
export {
  AbortError,
  Backoff,
  Client,
  ConnectionLost,
  GapError,
  JsonCodec,
  MsgpackCodec,
  ProtocolError,
  RtClientError,
  RtError,
  SUBPROTOCOL_JSON,
  SUBPROTOCOL_MSGPACK,
  SeqTracker,
  Session,
  TextMismatch,
  Turn,
  VERSION,
  codecFor,
  compact,
  mismatch,
  textCheck
};
