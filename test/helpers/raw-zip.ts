import { crc32, deflateRawSync } from 'node:zlib';

/**
 * One entry of {@link rawZip}: everything a hostile zip can say, including what a correct writer
 * (yazl) refuses to write — `..`, absolute and backslash names, symbolic links, duplicate names,
 * headers that lie about sizes or CRC.
 */
export interface RawEntry {
  /** The name's octets as stored (a string is written as UTF-8, with the UTF-8 flag). */
  name: string | Buffer;
  data?: Buffer;
  /** 0 stored (default), 8 deflated. */
  method?: 0 | 8;
  /** Unix mode for the high 16 bits of the external attributes (e.g. 0o120777 for a symlink). */
  unixMode?: number;
  /** Override the CRC-32 the headers carry. */
  crc?: number;
  /** Override the uncompressed size the headers carry. */
  declaredSize?: number;
}

/**
 * A zip written octet by octet (PKWARE APPNOTE 6.3.10 §4.3): local headers, data, central
 * directory, end record. An oracle independent of the reader under test, and of yazl's checks.
 */
export function rawZip(entries: readonly RawEntry[]): Buffer {
  const locals: Buffer[] = [];
  const centrals: Buffer[] = [];
  let offset = 0;
  for (const e of entries) {
    const name = typeof e.name === 'string' ? Buffer.from(e.name, 'utf8') : e.name;
    const data = e.data ?? Buffer.alloc(0);
    const method = e.method ?? 0;
    const stored = method === 8 ? deflateRawSync(data) : data;
    const crc = e.crc ?? crc32(data);
    const size = e.declaredSize ?? data.length;
    const flags = typeof e.name === 'string' ? 0x0800 : 0;
    // The fields local header and central record share, from `at` (APPNOTE 4.3.7 and 4.3.12).
    const common = (header: Buffer, at: number) => {
      header.writeUInt16LE(flags, at);
      header.writeUInt16LE(method, at + 2);
      header.writeUInt32LE(crc >>> 0, at + 8);
      header.writeUInt32LE(stored.length, at + 12);
      header.writeUInt32LE(size, at + 16);
      header.writeUInt16LE(name.length, at + 20);
    };
    const local = Buffer.alloc(30);
    local.writeUInt32LE(0x04034b50, 0);
    local.writeUInt16LE(20, 4);
    common(local, 6);
    locals.push(local, name, stored);
    const central = Buffer.alloc(46);
    central.writeUInt32LE(0x02014b50, 0);
    central.writeUInt16LE(e.unixMode === undefined ? 20 : (3 << 8) | 20, 4);
    central.writeUInt16LE(20, 6);
    common(central, 8);
    central.writeUInt32LE(e.unixMode === undefined ? 0 : (e.unixMode << 16) >>> 0, 38);
    central.writeUInt32LE(offset, 42);
    centrals.push(central, name);
    offset += 30 + name.length + stored.length;
  }
  const directory = Buffer.concat(centrals);
  const end = Buffer.alloc(22);
  end.writeUInt32LE(0x06054b50, 0);
  end.writeUInt16LE(entries.length, 8);
  end.writeUInt16LE(entries.length, 10);
  end.writeUInt32LE(directory.length, 12);
  end.writeUInt32LE(offset, 16);
  return Buffer.concat([...locals, directory, end]);
}
