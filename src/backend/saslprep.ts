/** SASLprep (RFC 4013, a stringprep profile of RFC 3454) of SCRAM passwords, as PostgreSQL applies it. */

type Ranges = readonly (readonly [number, number])[];

function inRanges(cp: number, ranges: Ranges): boolean {
  for (const [lo, hi] of ranges) if (cp >= lo && cp <= hi) return true;
  return false;
}

/** RFC 3454 C.1.2 — mapped to U+0020 by RFC 4013. */
const NON_ASCII_SPACE: Ranges = [[0x00a0, 0x00a0], [0x1680, 0x1680], [0x2000, 0x200b], [0x202f, 0x202f], [0x205f, 0x205f], [0x3000, 0x3000]];
/** RFC 3454 B.1 — mapped to nothing. */
const MAPPED_TO_NOTHING: Ranges = [
  [0x00ad, 0x00ad], [0x034f, 0x034f], [0x1806, 0x1806], [0x180b, 0x180d], [0x200b, 0x200d], [0x2060, 0x2060], [0xfe00, 0xfe0f], [0xfeff, 0xfeff],
];
/** RFC 4013 prohibited output: RFC 3454 C.1.2, C.2.1, C.2.2, C.3, C.4, C.5, C.6, C.7, C.8, C.9. */
const PROHIBITED: Ranges = [
  [0x0000, 0x001f], [0x007f, 0x00a0], [0x0340, 0x0341], [0x06dd, 0x06dd], [0x070f, 0x070f], [0x1680, 0x1680], [0x180e, 0x180e],
  [0x2000, 0x200f], [0x2028, 0x202f], [0x205f, 0x2063], [0x206a, 0x206f], [0x2ff0, 0x2ffb], [0x3000, 0x3000], [0xd800, 0xf8ff],
  [0xfdd0, 0xfdef], [0xfeff, 0xfeff], [0xfff9, 0xffff], [0x1d173, 0x1d17a], [0xe0001, 0xe0001], [0xe0020, 0xe007f], [0xf0000, 0x10ffff],
];
/** Supplementary-plane code points assigned in Unicode 3.2 (the complement of RFC 3454 A.1 there). */
const ASSIGNED_32_SUPPLEMENTARY: Ranges = [
  [0x10300, 0x1031e], [0x10320, 0x10323], [0x10330, 0x1034a], [0x10400, 0x10425], [0x10428, 0x1044d], [0x1d000, 0x1d0f5],
  [0x1d100, 0x1d126], [0x1d12a, 0x1d1dd], [0x1d400, 0x1d6a3], [0x1d6a8, 0x1d7c9], [0x1d7ce, 0x1d7ff], [0x20000, 0x2a6d6],
  [0x2f800, 0x2fa1d], [0xe0001, 0xe0001], [0xe0020, 0xe007f],
];
/** RFC 3454 D.1 — bidirectional category R or AL. */
const RAND_AL: Ranges = [
  [0x05be, 0x05be], [0x05c0, 0x05c0], [0x05c3, 0x05c3], [0x05d0, 0x05ea], [0x05f0, 0x05f4], [0x061b, 0x061b], [0x061f, 0x061f],
  [0x0621, 0x063a], [0x0640, 0x064a], [0x066d, 0x066f], [0x0671, 0x06d5], [0x06dd, 0x06dd], [0x06e5, 0x06e6], [0x06fa, 0x06fe],
  [0x0700, 0x070d], [0x0710, 0x0710], [0x0712, 0x072c], [0x0780, 0x07a5], [0x07b1, 0x07b1], [0x200f, 0x200f], [0xfb1d, 0xfb1d],
  [0xfb1f, 0xfb28], [0xfb2a, 0xfb36], [0xfb38, 0xfb3c], [0xfb3e, 0xfb3e], [0xfb40, 0xfb41], [0xfb43, 0xfb44], [0xfb46, 0xfbb1],
  [0xfbd3, 0xfd3d], [0xfd50, 0xfd8f], [0xfd92, 0xfdc7], [0xfdf0, 0xfdfc], [0xfe70, 0xfe74], [0xfe76, 0xfefc],
];
const UNASSIGNED_NOW = /^\p{Cn}$/u;
/** Approximates RFC 3454 D.2 (bidi category L): letters, spacing marks, non-European digits. */
const LEFT_TO_RIGHT = /^[\p{L}\p{Mc}\p{Nd}]$/u;
const EUROPEAN_OR_ARABIC_DIGIT: Ranges = [[0x30, 0x39], [0x660, 0x669], [0x6f0, 0x6f9], [0xff10, 0xff19]];

function unassignedIn32(cp: number): boolean {
  if (cp >= 0x10000) return !inRanges(cp, ASSIGNED_32_SUPPLEMENTARY);
  return UNASSIGNED_NOW.test(String.fromCodePoint(cp));
}

function isLCat(cp: number): boolean {
  return !inRanges(cp, RAND_AL) && !inRanges(cp, EUROPEAN_OR_ARABIC_DIGIT) && LEFT_TO_RIGHT.test(String.fromCodePoint(cp));
}

/**
 * SASLprep (RFC 4013) as PostgreSQL's pg_saslprep applies it to SCRAM passwords — both the server
 * (when it stored the verifier) and libpq; on any failure the password is used unchanged.
 *
 * - Pure ASCII is returned unchanged (PostgreSQL does not even reject ASCII control characters).
 * - Map C.1.2 spaces to U+0020 and B.1 characters to nothing; an empty result fails.
 * - Prohibited output (RFC 4013 §2.3) and unassigned code points fail. Like pg_saslprep, these and
 *   the bidi checks look at the mapped string before normalisation.
 * - Bidi (RFC 3454 §6): with any R/AL character, no L character and R/AL at both ends.
 * - NFKC with the JavaScript engine's Unicode version.
 *
 * Approximations (they can only matter for passwords mixing such characters with ones that mapping
 * or NFKC changes): "unassigned in Unicode 3.2" (A.1) is exact outside the BMP, but in the BMP it
 * is "unassigned in the engine's Unicode version", so BMP characters added after 3.2 pass;
 * bidi category L (D.2) is approximated by Unicode letters, spacing marks and non-European digits.
 */
export function saslprep(password: string): string {
  if (/^[\x00-\x7f]*$/.test(password)) return password;
  const mapped: number[] = [];
  for (const ch of password) {
    const cp = ch.codePointAt(0)!;
    if (inRanges(cp, NON_ASCII_SPACE)) mapped.push(0x20);
    else if (!inRanges(cp, MAPPED_TO_NOTHING)) mapped.push(cp);
  }
  if (mapped.length === 0) return password;
  for (const cp of mapped) {
    if (inRanges(cp, PROHIBITED) || unassignedIn32(cp)) return password;
  }
  if (mapped.some((cp) => inRanges(cp, RAND_AL))) {
    if (mapped.some(isLCat)) return password;
    if (!inRanges(mapped[0]!, RAND_AL) || !inRanges(mapped[mapped.length - 1]!, RAND_AL)) return password;
  }
  return mapped.map((cp) => String.fromCodePoint(cp)).join('').normalize('NFKC');
}
