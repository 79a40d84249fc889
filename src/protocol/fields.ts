import { MessageWriter, PayloadReader } from './buffer-writer.js';
import { ErrorFieldCodes, errorFieldName, type ErrorFields, type ErrorFieldName } from './errors.js';

/** Decodes the field list shared by ErrorResponse and NoticeResponse. */
export function decodeErrorFields(r: PayloadReader): ErrorFields {
  const fields: ErrorFields = {};
  for (;;) {
    const type = r.int8();
    if (type === 0) break;
    const code = String.fromCharCode(type);
    const value = r.cstring();
    const name = errorFieldName(code);
    if (name) fields[name] = value;
    else (fields.unknown ??= {})[code] = value;
  }
  return fields;
}

const ORDER = Object.keys(ErrorFieldCodes) as ErrorFieldName[];

export function writeErrorFields(w: MessageWriter, fields: ErrorFields): void {
  for (const name of ORDER) {
    const value = fields[name];
    if (value === undefined) continue;
    w.int8(ErrorFieldCodes[name].charCodeAt(0)).cstring(value);
  }
  for (const [code, value] of Object.entries(fields.unknown ?? {})) {
    w.int8(code.charCodeAt(0)).cstring(value);
  }
  w.int8(0);
}
