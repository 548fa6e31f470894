// Image metadata and a small PNG thumbnail (XEP-0264) for uploaded images, made once per blob at
// PUT time. sharp (libvips) does the work on libuv's thread pool, so the event loop never decodes
// an image.
import { open } from 'node:fs/promises';
import sharp from 'sharp';

export type ImageFormat = 'jpeg' | 'png' | 'webp' | 'gif';

export interface ImageInfo {
  format: ImageFormat;
  /** Displayed size: after the EXIF orientation is applied, first frame only. */
  width: number;
  height: number;
  thumbnail: {
    /** PNG, base64. */
    data: string;
    width: number;
    height: number;
  };
}

/**
 * The format, from the file's first bytes rather than the declared type: only these four are
 * handed to libvips, which also reads SVG, PDF and other formats that can fetch external
 * resources or cost far more to decode.
 */
export function sniffImage(head: Buffer): ImageFormat | undefined {
  if (head.length >= 3 && head[0] === 0xff && head[1] === 0xd8 && head[2] === 0xff) return 'jpeg';
  if (head.length >= 8 && head.subarray(0, 8).equals(Buffer.from([0x89, 0x50, 0x4e, 0x47, 0x0d, 0x0a, 0x1a, 0x0a]))) return 'png';
  if (head.length >= 12 && head.toString('latin1', 0, 4) === 'RIFF' && head.toString('latin1', 8, 12) === 'WEBP') return 'webp';
  if (head.length >= 6 && /^GIF8[79]a$/.test(head.toString('latin1', 0, 6))) return 'gif';
  return undefined;
}

async function readHead(file: string, n: number): Promise<Buffer> {
  const fh = await open(file, 'r');
  try {
    const buf = Buffer.alloc(n);
    const { bytesRead } = await fh.read(buf, 0, n, 0);
    return buf.subarray(0, bytesRead);
  } finally {
    await fh.close();
  }
}

export interface ThumbnailOptions {
  /** Longest side of the thumbnail in pixels. */
  size: number;
  /** Images with more pixels are not decoded (decompression bombs). */
  maxPixels: number;
}

/**
 * Reads an image file and makes its thumbnail; undefined when the file is not one of the four
 * formats or does not decode (a broken or truncated image is still a valid upload, just one
 * without a preview).
 */
export async function describeImage(file: string, o: ThumbnailOptions): Promise<ImageInfo | undefined> {
  const format = sniffImage(await readHead(file, 16));
  if (!format) return undefined;
  // pages: 1 = the first frame of an animation; failOn 'error' refuses corrupt data instead of
  // making a thumbnail of garbage.
  const input = { limitInputPixels: o.maxPixels, failOn: 'error' as const, pages: 1, autoOrient: true };
  try {
    const meta = await sharp(file, input).metadata();
    if (meta.format !== format) return undefined;
    // With pages: 1 the metadata describes the first frame; autoOrient swaps sides for EXIF
    // rotations, as viewers show the picture.
    const { width, height } = meta.autoOrient;
    const { data, info } = await sharp(file, input)
      .resize(o.size, o.size, { fit: 'inside', withoutEnlargement: true })
      // A palette PNG keeps a 64 px preview to a few KB: it travels inside every message.
      .png({ palette: true, compressionLevel: 9, effort: 7 })
      .toBuffer({ resolveWithObject: true });
    return { format, width, height, thumbnail: { data: data.toString('base64'), width: info.width, height: info.height } };
  } catch {
    return undefined;
  }
}
