import { readFileSync } from 'node:fs';
import { dirname, isAbsolute, resolve } from 'node:path';
import { parseAllDocuments } from 'yaml';
import { invalid } from '@weft/common';
import { AlgorithmSpec } from '@weft/proto';

/**
 * Reads a YAML or JSON file of documents; a document holding a list counts as
 * that many documents.
 */
export function readDocuments(file: string): unknown[] {
  const text = readFileSync(file, 'utf8');
  const out: unknown[] = [];
  for (const doc of parseAllDocuments(text)) {
    if (doc.errors.length > 0) throw invalid(file, doc.errors[0]!.message);
    const v: unknown = doc.toJS();
    if (v === null || v === undefined) continue;
    if (Array.isArray(v)) out.push(...(v as unknown[]));
    else out.push(v);
  }
  return out;
}

/**
 * Loads algorithm specs (HKube form) from a file; a relative code.path is
 * resolved against the file's directory, because the embedded control plane
 * runs on the same machine as the file.
 */
export function loadAlgorithmFile(file: string): AlgorithmSpec[] {
  return readDocuments(file).map((doc) => {
    const spec = AlgorithmSpec.fromJSON(doc);
    if (spec.code?.path && !isAbsolute(spec.code.path)) spec.code.path = resolve(dirname(file), spec.code.path);
    return spec;
  });
}
