// json.ts: read top-level string members of a JSON object (enough for plugin config).
//
// getString(json, "tag") is the unescaped string value of member "tag", or null when the
// text is not a well-formed object, the key is missing or its value is not a string.
// getStringArray does the same for an array of strings. Duplicate keys: the last wins.
// Escapes \" \\ \/ \b \f \n \r \t and \uXXXX are decoded. Nested values are skipped.

class Cursor {
  constructor(public s: string, public pos: i32 = 0) {}
  get done(): bool { return this.pos >= this.s.length; }
  peek(): i32 { return this.pos < this.s.length ? this.s.charCodeAt(this.pos) : -1; }
  ws(): void {
    while (!this.done) {
      const c = this.peek();
      if (c != 0x20 && c != 0x09 && c != 0x0a && c != 0x0d) break;
      this.pos++;
    }
  }
}

function hex(c: i32): i32 {
  if (c >= 0x30 && c <= 0x39) return c - 0x30;
  if (c >= 0x61 && c <= 0x66) return c - 0x61 + 10;
  if (c >= 0x41 && c <= 0x46) return c - 0x41 + 10;
  return -1;
}

// A string at the cursor (on its opening quote); null when malformed.
function readString(cur: Cursor): string | null {
  if (cur.peek() != 0x22) return null;
  cur.pos++;
  let out = "";
  let runStart = cur.pos;
  while (!cur.done) {
    const c = cur.peek();
    if (c == 0x22) {
      out += cur.s.substring(runStart, cur.pos);
      cur.pos++;
      return out;
    }
    if (c < 0x20) return null;
    if (c != 0x5c) {
      cur.pos++;
      continue;
    }
    out += cur.s.substring(runStart, cur.pos);
    cur.pos++;
    const e = cur.peek();
    cur.pos++;
    if (e == 0x22) out += "\"";
    else if (e == 0x5c) out += "\\";
    else if (e == 0x2f) out += "/";
    else if (e == 0x62) out += "\b";
    else if (e == 0x66) out += "\f";
    else if (e == 0x6e) out += "\n";
    else if (e == 0x72) out += "\r";
    else if (e == 0x74) out += "\t";
    else if (e == 0x75) {
      if (cur.pos + 4 > cur.s.length) return null;
      let code = 0;
      for (let i = 0; i < 4; i++) {
        const h = hex(cur.s.charCodeAt(cur.pos + i));
        if (h < 0) return null;
        code = code * 16 + h;
      }
      cur.pos += 4;
      out += String.fromCharCode(code); // UTF-16 unit: surrogate pairs join by themselves
    } else return null;
    runStart = cur.pos;
  }
  return null;
}

function skipValue(cur: Cursor): bool {
  cur.ws();
  const c = cur.peek();
  if (c == 0x22) return readString(cur) !== null;
  if (c == 0x7b || c == 0x5b) {
    let depth = 0;
    while (!cur.done) {
      const d = cur.peek();
      if (d == 0x22) {
        if (readString(cur) === null) return false;
        continue;
      }
      cur.pos++;
      if (d == 0x7b || d == 0x5b) depth++;
      else if (d == 0x7d || d == 0x5d) {
        if (--depth == 0) return true;
      }
    }
    return false;
  }
  const start = cur.pos;
  while (!cur.done) {
    const d = cur.peek();
    if (d == 0x2c || d == 0x7d || d == 0x5d || d == 0x20 || d == 0x09 || d == 0x0a || d == 0x0d) break;
    cur.pos++;
  }
  return cur.pos > start;
}

// Offset of the value of top-level member `key`, or -1.
function member(json: string, key: string): i32 {
  const cur = new Cursor(json);
  let found = -1;
  cur.ws();
  if (cur.peek() != 0x7b) return -1;
  cur.pos++;
  cur.ws();
  if (cur.peek() == 0x7d) return -1;
  while (!cur.done) {
    cur.ws();
    const name = readString(cur);
    if (name === null) return -1;
    cur.ws();
    if (cur.peek() != 0x3a) return -1;
    cur.pos++;
    cur.ws();
    if (name == key) found = cur.pos;
    if (!skipValue(cur)) return -1;
    cur.ws();
    const c = cur.peek();
    if (c == 0x2c) {
      cur.pos++;
      continue;
    }
    return c == 0x7d ? found : -1;
  }
  return -1;
}

export function getString(json: string, key: string): string | null {
  const at = member(json, key);
  if (at < 0) return null;
  return readString(new Cursor(json, at));
}

export function getStringArray(json: string, key: string): string[] | null {
  const at = member(json, key);
  if (at < 0) return null;
  const cur = new Cursor(json, at);
  if (cur.peek() != 0x5b) return null;
  cur.pos++;
  const out = new Array<string>();
  cur.ws();
  if (cur.peek() == 0x5d) return out;
  while (!cur.done) {
    cur.ws();
    const item = readString(cur);
    if (item === null) return null;
    out.push(item);
    cur.ws();
    const c = cur.peek();
    if (c == 0x2c) {
      cur.pos++;
      continue;
    }
    return c == 0x5d ? out : null;
  }
  return null;
}
