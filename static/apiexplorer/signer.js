// itsdangerous TimestampSigner tokens, made in the browser: what the server checks in the
// x-channelstream-secret header of server API calls.
//
//   token = value "." b64(timestamp) "." b64(HMAC-SHA1(key, value "." b64(timestamp)))
//   key   = SHA1("itsdangerous.Signer" + "signer" + secret)     (django-concat derivation)
//   b64   = URL-safe base64 without "=" padding; the timestamp is big-endian Unix seconds with
//           no leading zero bytes.
//
// Web Crypto does the hashing where the page is a secure context (https, or 127.0.0.1 and
// localhost); elsewhere (plain http to another host) a small SHA-1 in this file does.

const encoder = new TextEncoder();

export function base64url(bytes) {
  let binary = "";
  for (const byte of bytes) binary += String.fromCharCode(byte);
  return btoa(binary).replace(/\+/g, "-").replace(/\//g, "_").replace(/=+$/, "");
}

export function timestampBytes(seconds) {
  const bytes = [];
  let rest = Math.floor(seconds);
  while (rest > 0) {
    bytes.unshift(rest % 256);
    rest = Math.floor(rest / 256);
  }
  return new Uint8Array(bytes);
}

function concat(...parts) {
  const whole = new Uint8Array(parts.reduce((size, part) => size + part.length, 0));
  let offset = 0;
  for (const part of parts) {
    whole.set(part, offset);
    offset += part.length;
  }
  return whole;
}

// ------------------------------------------------------------------ SHA-1 without Web Crypto

export function sha1(message) {
  const words = new Uint32Array(80);
  const length = message.length;
  const padded = new Uint8Array(((length + 8) >> 6) * 64 + 64);
  padded.set(message);
  padded[length] = 0x80;
  const view = new DataView(padded.buffer);
  view.setUint32(padded.length - 8, Math.floor((length * 8) / 2 ** 32));
  view.setUint32(padded.length - 4, (length * 8) >>> 0);
  let [h0, h1, h2, h3, h4] = [0x67452301, 0xefcdab89, 0x98badcfe, 0x10325476, 0xc3d2e1f0];
  const rotl = (x, n) => (x << n) | (x >>> (32 - n));
  for (let block = 0; block < padded.length; block += 64) {
    for (let i = 0; i < 16; i++) words[i] = view.getUint32(block + i * 4);
    for (let i = 16; i < 80; i++) words[i] = rotl(words[i - 3] ^ words[i - 8] ^ words[i - 14] ^ words[i - 16], 1);
    let [a, b, c, d, e] = [h0, h1, h2, h3, h4];
    for (let i = 0; i < 80; i++) {
      let f;
      let k;
      if (i < 20) [f, k] = [(b & c) | (~b & d), 0x5a827999];
      else if (i < 40) [f, k] = [b ^ c ^ d, 0x6ed9eba1];
      else if (i < 60) [f, k] = [(b & c) | (b & d) | (c & d), 0x8f1bbcdc];
      else [f, k] = [b ^ c ^ d, 0xca62c1d6];
      const next = (rotl(a, 5) + f + e + k + words[i]) >>> 0;
      [e, d, c, b, a] = [d, c, rotl(b, 30) >>> 0, a, next];
    }
    h0 = (h0 + a) >>> 0;
    h1 = (h1 + b) >>> 0;
    h2 = (h2 + c) >>> 0;
    h3 = (h3 + d) >>> 0;
    h4 = (h4 + e) >>> 0;
  }
  const digest = new Uint8Array(20);
  const out = new DataView(digest.buffer);
  [h0, h1, h2, h3, h4].forEach((h, i) => out.setUint32(i * 4, h));
  return digest;
}

export function hmacSha1(key, message) {
  const block = new Uint8Array(64);
  block.set(key.length > 64 ? sha1(key) : key);
  const inner = block.map((byte) => byte ^ 0x36);
  const outer = block.map((byte) => byte ^ 0x5c);
  return sha1(concat(outer, sha1(concat(inner, message))));
}

// ------------------------------------------------------------------ the signer

const subtle = globalThis.crypto && globalThis.crypto.subtle;

async function deriveKey(secret, useWebCrypto) {
  const material = concat(encoder.encode("itsdangerous.Signer"), encoder.encode("signer"), encoder.encode(secret));
  if (!useWebCrypto) return sha1(material);
  return new Uint8Array(await subtle.digest("SHA-1", material));
}

async function hmac(key, message, useWebCrypto) {
  if (!useWebCrypto) return hmacSha1(key, message);
  const cryptoKey = await subtle.importKey("raw", key, { name: "HMAC", hash: "SHA-1" }, false, ["sign"]);
  return new Uint8Array(await subtle.sign("HMAC", cryptoKey, message));
}

/**
 * A TimestampSigner token of `value` (a request path such as "/connect") with `secret`.
 * `timestamp` (Unix seconds) defaults to now; `useWebCrypto` to whether Web Crypto is there.
 */
export async function sign(secret, value, { timestamp = Date.now() / 1000, useWebCrypto = Boolean(subtle) } = {}) {
  const payload = `${value}.${base64url(timestampBytes(timestamp))}`;
  const key = await deriveKey(secret, useWebCrypto);
  const signature = await hmac(key, encoder.encode(payload), useWebCrypto);
  return `${payload}.${base64url(signature)}`;
}
