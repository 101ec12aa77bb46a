// A QR code of a security code, so two people in a room can compare codes
// by scanning instead of reading 60 digits out. Only what that needs: the
// digits in numeric mode, in a version 3 symbol (29×29 modules) with error
// correction level M (up to 101 digits), mask 0. After ISO/IEC 18004 and
// Project Nayuki's reference implementation.

const VERSION = 3;
const SIZE = VERSION * 4 + 17;
const DATA_CODEWORDS = 44;
const ECC_CODEWORDS = 26;
/** Error correction level M in the format bits. */
const ECL_M = 0;
const MASK = 0;

/** Multiplication in GF(256) modulo x^8 + x^4 + x^3 + x^2 + 1. */
function gfMul(x, y) {
  let z = 0;
  for (let i = 7; i >= 0; i -= 1) {
    z = (z << 1) ^ ((z >>> 7) * 0x11d);
    z ^= ((y >>> i) & 1) * x;
  }
  return z;
}

function eccFor(data) {
  const divisor = new Array(ECC_CODEWORDS).fill(0);
  divisor[ECC_CODEWORDS - 1] = 1;
  let root = 1;
  for (let i = 0; i < ECC_CODEWORDS; i += 1) {
    for (let j = 0; j < ECC_CODEWORDS; j += 1) {
      divisor[j] = gfMul(divisor[j], root);
      if (j + 1 < ECC_CODEWORDS) divisor[j] ^= divisor[j + 1];
    }
    root = gfMul(root, 0x02);
  }
  const rem = new Array(ECC_CODEWORDS).fill(0);
  for (const b of data) {
    const factor = b ^ rem.shift();
    rem.push(0);
    for (let i = 0; i < ECC_CODEWORDS; i += 1) rem[i] ^= gfMul(divisor[i], factor);
  }
  return rem;
}

/** The data codewords of `digits` in numeric mode, padded. */
function codewords(digits) {
  const bits = [];
  const put = (value, n) => {
    for (let i = n - 1; i >= 0; i -= 1) bits.push((value >>> i) & 1);
  };
  put(0b0001, 4);
  put(digits.length, 10);
  for (let i = 0; i < digits.length; i += 3) {
    const group = digits.slice(i, i + 3);
    put(Number(group), group.length * 3 + 1);
  }
  const capacity = DATA_CODEWORDS * 8;
  put(0, Math.min(4, capacity - bits.length));
  while (bits.length % 8) bits.push(0);
  const bytes = [];
  for (let i = 0; i < bits.length; i += 8) bytes.push(bits.slice(i, i + 8).reduce((n, b) => (n << 1) | b, 0));
  for (let pad = 0xec; bytes.length < DATA_CODEWORDS; pad ^= 0xec ^ 0x11) bytes.push(pad);
  return bytes;
}

/** The modules (rows of booleans, true = dark) of a QR code of `digits` (at most 101). */
export function qrModules(digits) {
  if (!/^\d{1,101}$/.test(digits)) throw new Error('a QR code here holds 1 to 101 digits');
  const dark = Array.from({ length: SIZE }, () => new Array(SIZE).fill(false));
  const fixed = Array.from({ length: SIZE }, () => new Array(SIZE).fill(false));
  const set = (x, y, on) => {
    dark[y][x] = on;
    fixed[y][x] = true;
  };
  for (let i = 0; i < SIZE; i += 1) {
    set(6, i, i % 2 === 0);
    set(i, 6, i % 2 === 0);
  }
  for (const [cx, cy] of [[3, 3], [SIZE - 4, 3], [3, SIZE - 4]]) {
    for (let dy = -4; dy <= 4; dy += 1) {
      for (let dx = -4; dx <= 4; dx += 1) {
        const x = cx + dx;
        const y = cy + dy;
        const d = Math.max(Math.abs(dx), Math.abs(dy));
        if (x >= 0 && x < SIZE && y >= 0 && y < SIZE) set(x, y, d !== 2 && d !== 4);
      }
    }
  }
  for (let dy = -2; dy <= 2; dy += 1) {
    for (let dx = -2; dx <= 2; dx += 1) set(22 + dx, 22 + dy, Math.max(Math.abs(dx), Math.abs(dy)) !== 1);
  }
  // Format bits: error correction level and mask, BCH-coded.
  const format = (ECL_M << 3) | MASK;
  let rem = format;
  for (let i = 0; i < 10; i += 1) rem = (rem << 1) ^ ((rem >>> 9) * 0x537);
  const bits = ((format << 10) | rem) ^ 0x5412;
  const bit = (i) => ((bits >>> i) & 1) === 1;
  for (let i = 0; i <= 5; i += 1) set(8, i, bit(i));
  set(8, 7, bit(6));
  set(8, 8, bit(7));
  set(7, 8, bit(8));
  for (let i = 9; i < 15; i += 1) set(14 - i, 8, bit(i));
  for (let i = 0; i < 8; i += 1) set(SIZE - 1 - i, 8, bit(i));
  for (let i = 8; i < 15; i += 1) set(8, SIZE - 15 + i, bit(i));
  set(8, SIZE - 8, true);
  // Data and error correction, in the zigzag order, masked.
  const data = codewords(digits);
  const all = [...data, ...eccFor(data)];
  let n = 0;
  for (let right = SIZE - 1; right >= 1; right -= 2) {
    if (right === 6) right = 5;
    for (let vert = 0; vert < SIZE; vert += 1) {
      for (let j = 0; j < 2; j += 1) {
        const x = right - j;
        const y = ((right + 1) & 2) === 0 ? SIZE - 1 - vert : vert;
        if (fixed[y][x]) continue;
        const on = n < all.length * 8 && ((all[n >>> 3] >>> (7 - (n & 7))) & 1) === 1;
        n += 1;
        dark[y][x] = on !== ((x + y) % 2 === 0);
      }
    }
  }
  return dark;
}

/** An SVG element of the QR code of `digits`, with the quiet zone around it. */
export function qrSvg(digits, { px = 200 } = {}) {
  const m = qrModules(digits);
  const quiet = 4;
  const size = m.length + 2 * quiet;
  let path = '';
  m.forEach((row, y) => row.forEach((on, x) => {
    if (on) path += `M${x + quiet},${y + quiet}h1v1h-1z`;
  }));
  const ns = 'http://www.w3.org/2000/svg';
  const svg = document.createElementNS(ns, 'svg');
  svg.setAttribute('viewBox', `0 0 ${size} ${size}`);
  svg.setAttribute('width', String(px));
  svg.setAttribute('height', String(px));
  svg.setAttribute('shape-rendering', 'crispEdges');
  const bg = document.createElementNS(ns, 'rect');
  bg.setAttribute('width', String(size));
  bg.setAttribute('height', String(size));
  bg.setAttribute('fill', '#fff');
  const p = document.createElementNS(ns, 'path');
  p.setAttribute('d', path);
  p.setAttribute('fill', '#000');
  svg.append(bg, p);
  return svg;
}
