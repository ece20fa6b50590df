import { readFile } from 'node:fs/promises';
import { dirname, extname, isAbsolute, resolve } from 'node:path';
import { parseAllDocuments } from 'yaml';
import { encode } from '@weft/common';
import { AlgorithmSpec, PipelineDescriptor } from '@weft/proto';
import { suggest } from './args.js';
import { CliError } from './errors.js';

/** The values held by a YAML or JSON file. */
export interface Documents {
  values: unknown[];
  /** True when the file held a list or several YAML documents rather than one value. */
  many: boolean;
}

async function readText(file: string): Promise<string> {
  try {
    return await readFile(file, 'utf8');
  } catch (err) {
    const code = (err as NodeJS.ErrnoException).code;
    if (code === 'ENOENT') throw new CliError(`cannot read ${file}: no such file`);
    if (code === 'EISDIR') throw new CliError(`cannot read ${file}: it is a directory`);
    throw new CliError(`cannot read ${file}: ${code ?? (err instanceof Error ? err.message : String(err))}`);
  }
}

/**
 * Parses YAML or JSON text. A top-level list and a multi-document stream both
 * yield several values; empty documents are skipped.
 */
export function parseDocuments(text: string, file: string): Documents {
  if (extname(file).toLowerCase() === '.json') {
    let value: unknown;
    try {
      value = JSON.parse(text);
    } catch (err) {
      throw new CliError(`${file}: ${err instanceof Error ? err.message : String(err)}`);
    }
    return Array.isArray(value) ? { values: value as unknown[], many: true } : { values: [value], many: false };
  }
  const docs = parseAllDocuments(text);
  const values: unknown[] = [];
  let many = false;
  for (const doc of docs) {
    const error = doc.errors[0];
    // yaml's messages end with a code frame on later lines; the first line has the position.
    if (error) throw new CliError(`${file}: ${(error.message.split('\n')[0] ?? 'invalid YAML').replace(/:$/, '')}`);
    const value: unknown = doc.toJS();
    if (value === null || value === undefined) continue;
    if (Array.isArray(value)) {
      values.push(...(value as unknown[]));
      many = true;
    } else {
      values.push(value);
    }
  }
  return { values, many: many || values.length > 1 };
}

/** Reads a YAML or JSON file; see {@link parseDocuments}. */
export async function loadDocuments(file: string): Promise<Documents> {
  return parseDocuments(await readText(file), file);
}

/** A YAML/JSON mapping as a record. */
export function isMapping(value: unknown): value is Record<string, unknown> {
  return typeof value === 'object' && value !== null && !Array.isArray(value) && !(value instanceof Uint8Array);
}

/**
 * The fields the messages know, in HKube's camelCase and proto's snake_case.
 * fromJSON drops anything else without a word, so we warn: a misspelt
 * `nodename` would otherwise silently become an empty node name.
 */
const KNOWN = {
  algorithm: [
    'name',
    'env',
    'algorithmImage',
    'algorithm_image',
    'resources',
    'code',
    'minHotWorkers',
    'min_hot_workers',
    'maxWorkers',
    'max_workers',
    'algorithmEnv',
    'algorithm_env',
    'cpu',
    'mem',
    'gpu',
  ],
  code: ['path', 'entryPoint', 'entry_point', 'stage'],
  resources: ['cpu', 'mem', 'gpu'],
  pipeline: [
    'name',
    'description',
    'nodes',
    'flowInput',
    'flow_input',
    'priority',
    'tags',
    'options',
    'webhooks',
    'triggers',
  ],
  node: [
    'nodeName',
    'node_name',
    'algorithmName',
    'algorithm_name',
    'input',
    'kind',
    'retry',
    'ttl',
    'batchOperation',
    'batch_operation',
    'spec',
  ],
  options: [
    'ttl',
    'activeTtl',
    'active_ttl',
    'batchTolerance',
    'batch_tolerance',
    'concurrentPipelines',
    'concurrent_pipelines',
    'progressVerbosityLevel',
    'progress_verbosity_level',
  ],
} as const;

/** Warnings for the keys of `value` that `known` does not list. */
export function unknownFields(value: unknown, known: readonly string[], where: string): string[] {
  if (!isMapping(value)) return [];
  return Object.keys(value)
    .filter((key) => !known.includes(key))
    .map((key) => {
      const guess = suggest(key, known);
      return `${where}: unknown field "${key}" ignored${guess ? ` (did you mean "${guess}"?)` : ''}`;
    });
}

/** True when a value holds something a protobuf Struct cannot carry (binary, bigint, dates). */
export function needsMsgpack(value: unknown): boolean {
  if (typeof value === 'bigint' || value instanceof Uint8Array || value instanceof Date || value instanceof Map) {
    return true;
  }
  if (Array.isArray(value)) return value.some(needsMsgpack);
  if (isMapping(value)) return Object.values(value).some(needsMsgpack);
  return false;
}

/** Algorithm specs read from a file, ready to apply. */
export interface AlgorithmFile {
  specs: AlgorithmSpec[];
  many: boolean;
  warnings: string[];
}

/**
 * Reads algorithm specs. A relative `code.path` is made absolute against the
 * file's directory, which is where the user keeps the code (`weft algorithm
 * apply` then uploads it; see `stageAlgorithmCode`).
 */
export async function loadAlgorithmSpecs(file: string): Promise<AlgorithmFile> {
  const { values, many } = await loadDocuments(file);
  if (values.length === 0) throw new CliError(`${file}: no algorithm spec found`);
  const warnings: string[] = [];
  const specs = values.map((value, i) => {
    const where = many ? `${file}[${i}]` : file;
    if (!isMapping(value)) throw new CliError(`${where}: an algorithm spec must be a mapping`);
    warnings.push(...unknownFields(value, KNOWN.algorithm, where));
    warnings.push(...unknownFields(value['code'], KNOWN.code, `${where} code`));
    warnings.push(...unknownFields(value['resources'], KNOWN.resources, `${where} resources`));
    const spec = AlgorithmSpec.fromJSON(value);
    if (!spec.name) throw new CliError(`${where}: name is missing`);
    if (spec.code?.path && !isAbsolute(spec.code.path)) {
      spec.code.path = resolve(dirname(resolve(file)), spec.code.path);
    }
    return spec;
  });
  return { specs, many, warnings };
}

/** Pipeline descriptors read from a file. */
export interface PipelineFile {
  pipelines: PipelineDescriptor[];
  /** The raw flowInput of each descriptor (fromJSON keeps only Struct-able data). */
  flowInputs: unknown[];
  many: boolean;
  warnings: string[];
}

/** Reads pipeline descriptors in HKube form. */
export async function loadPipelines(file: string): Promise<PipelineFile> {
  const { values, many } = await loadDocuments(file);
  if (values.length === 0) throw new CliError(`${file}: no pipeline descriptor found`);
  const warnings: string[] = [];
  const flowInputs: unknown[] = [];
  const pipelines = values.map((value, i) => {
    const where = many ? `${file}[${i}]` : file;
    if (!isMapping(value)) throw new CliError(`${where}: a pipeline descriptor must be a mapping`);
    warnings.push(...unknownFields(value, KNOWN.pipeline, where));
    warnings.push(...unknownFields(value['options'], KNOWN.options, `${where} options`));
    const nodes = value['nodes'];
    if (Array.isArray(nodes)) {
      nodes.forEach((node: unknown, j) => {
        warnings.push(...unknownFields(node, KNOWN.node, `${where} nodes[${j}]`));
      });
    }
    if (needsMsgpack(value['nodes'])) {
      throw new CliError(`${where}: node inputs may hold only JSON values (no binary data)`);
    }
    flowInputs.push(value['flowInput'] ?? value['flow_input']);
    return PipelineDescriptor.fromJSON(value);
  });
  return { pipelines, flowInputs, many, warnings };
}

/** Reads the file given to --input: one mapping that replaces the pipeline's flowInput. */
export async function loadFlowInput(file: string): Promise<Record<string, unknown>> {
  const { values, many } = await loadDocuments(file);
  const value = values[0];
  if (many || !isMapping(value)) throw new CliError(`${file}: flowInput must be a single mapping`);
  return value;
}

/**
 * How a flowInput travels: as a Struct when it is plain JSON, else as
 * msgpack, which also carries binary data and large integers.
 */
export function flowInputFields(
  value: Record<string, unknown>,
): { flowInput: Record<string, unknown> } | { flowInputMsgpack: Buffer } {
  return needsMsgpack(value) ? { flowInputMsgpack: encode(value) } : { flowInput: value };
}

/** Workflow documents read from a file, ready to send as they are. */
export interface WorkflowFile {
  documents: Record<string, unknown>[];
  /** How to name each document in an error: `workflow "ID"`, or its place in the file when it has no id. */
  names: string[];
  many: boolean;
}

/**
 * Checks the documents of a workflow file. The server validates the fields
 * (and reports unknown ones); here only what must hold before sending: each
 * document is a mapping a protobuf Struct can carry, and no id appears twice
 * (the second would silently replace the first).
 */
export function workflowDocuments({ values, many }: Documents, file: string): WorkflowFile {
  if (values.length === 0) throw new CliError(`${file}: no workflow document found`);
  const documents: Record<string, unknown>[] = [];
  const names: string[] = [];
  const seen = new Map<string, string>();
  values.forEach((value, i) => {
    const where = many ? `${file}[${i}]` : file;
    if (!isMapping(value)) throw new CliError(`${where}: a workflow document must be a mapping`);
    if (needsMsgpack(value)) throw new CliError(`${where}: a workflow document may hold only JSON values`);
    const id = value['id'];
    if (typeof id === 'string' && id.trim() !== '') {
      const first = seen.get(id);
      if (first !== undefined) throw new CliError(`${where}: workflow "${id}" is also defined at ${first}`);
      seen.set(id, where);
      names.push(`workflow "${id}"`);
    } else {
      names.push(where);
    }
    documents.push(value);
  });
  return { documents, names, many };
}

/** Reads workflow documents (Styx's file format plus weft's fields); see {@link workflowDocuments}. */
export async function loadWorkflowDocuments(file: string): Promise<WorkflowFile> {
  return workflowDocuments(await loadDocuments(file), file);
}
