import { mkdtemp, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { decode } from '@weft/common';
import { CliError } from './errors.js';
import {
  flowInputFields,
  loadAlgorithmSpecs,
  loadFlowInput,
  loadPipelines,
  loadWorkflowDocuments,
  parseDocuments,
  workflowDocuments,
} from './files.js';

let dir: string;

beforeAll(async () => {
  dir = await mkdtemp(join(tmpdir(), 'weft-cli-'));
});
afterAll(async () => {
  await rm(dir, { recursive: true, force: true });
});

async function file(name: string, text: string): Promise<string> {
  const path = join(dir, name);
  await writeFile(path, text);
  return path;
}

describe('parseDocuments', () => {
  it('reads one value, a list, or a multi-document stream', () => {
    expect(parseDocuments('a: 1\n', 'x.yaml')).toEqual({ values: [{ a: 1 }], many: false });
    expect(parseDocuments('- a: 1\n- a: 2\n', 'x.yaml')).toEqual({ values: [{ a: 1 }, { a: 2 }], many: true });
    expect(parseDocuments('a: 1\n---\n---\na: 2\n', 'x.yaml')).toEqual({ values: [{ a: 1 }, { a: 2 }], many: true });
    expect(parseDocuments('{"a": [1]}', 'x.json')).toEqual({ values: [{ a: [1] }], many: false });
  });

  it('reports syntax errors in one line with the file name', () => {
    expect(() => parseDocuments('a: [1\n', 'bad.yaml')).toThrow(/^bad\.yaml: .*line/);
    expect(() => parseDocuments('{', 'bad.json')).toThrow(CliError);
  });
});

describe('loadAlgorithmSpecs', () => {
  it('resolves a relative code.path against the file and warns about unknown fields', async () => {
    const path = await file(
      'algorithms.yaml',
      [
        'name: sum',
        'env: nodejs',
        'code: { path: ./sum, entryPoint: index.js }',
        'minHotWorkers: 1',
        'algorithmEnv: { A: 1 }',
        'entrypoint: x',
        '---',
        'name: image-only',
        'algorithmImage: example/img:1',
        'code: { path: /abs/path }',
      ].join('\n'),
    );
    const { specs, many, warnings } = await loadAlgorithmSpecs(path);
    expect(many).toBe(true);
    expect(specs.map((s) => s.name)).toEqual(['sum', 'image-only']);
    expect(specs[0]?.code).toEqual({ path: join(dir, 'sum'), entryPoint: 'index.js', stage: '' });
    expect(specs[0]?.minHotWorkers).toBe(1);
    expect(specs[0]?.algorithmEnv).toEqual({ A: '1' });
    expect(specs[1]?.code?.path).toBe('/abs/path');
    expect(warnings).toEqual([`${path}[0]: unknown field "entrypoint" ignored`]);
  });

  it('rejects a spec without a name and a missing file', async () => {
    await expect(loadAlgorithmSpecs(await file('noname.yaml', 'env: nodejs\n'))).rejects.toThrow('name is missing');
    await expect(loadAlgorithmSpecs(join(dir, 'nope.yaml'))).rejects.toThrow('no such file');
  });
});

describe('loadPipelines', () => {
  it('maps HKube descriptors and flags misspelt node fields', async () => {
    const path = await file(
      'pipeline.yaml',
      [
        'name: sum',
        'flowInput: { n: 3 }',
        'nodes:',
        '  - nodeName: Range',
        '    algorithmName: range',
        '    input: ["@flowInput.n"]',
        '  - nodename: Reduce',
        '    algorithmName: reduce',
      ].join('\n'),
    );
    const { pipelines, flowInputs, warnings } = await loadPipelines(path);
    expect(pipelines[0]?.nodes[0]).toMatchObject({
      nodeName: 'Range',
      algorithmName: 'range',
      input: ['@flowInput.n'],
    });
    expect(pipelines[0]?.flowInput).toEqual({ n: 3 });
    expect(flowInputs).toEqual([{ n: 3 }]);
    expect(warnings).toEqual([`${path} nodes[1]: unknown field "nodename" ignored (did you mean "nodeName"?)`]);
  });
});

describe('flow input', () => {
  it('must be one mapping', async () => {
    await expect(loadFlowInput(await file('list.yaml', '- 1\n'))).rejects.toThrow('flowInput must be a single mapping');
    expect(await loadFlowInput(await file('input.json', '{"n": 5}'))).toEqual({ n: 5 });
  });

  it('travels as a Struct unless it holds binary data', async () => {
    expect(flowInputFields({ n: 1 })).toEqual({ flowInput: { n: 1 } });
    const binary = await loadFlowInput(await file('bin.yaml', 'data: !!binary aGk=\n'));
    const fields = flowInputFields(binary);
    if (!('flowInputMsgpack' in fields)) throw new Error('expected msgpack');
    expect(decode(fields.flowInputMsgpack)).toEqual({ data: Buffer.from('hi') });
  });
});

describe('workflow documents', () => {
  it('reads one document or a stream, named by id', async () => {
    const one = await loadWorkflowDocuments(
      await file('wf.yaml', 'id: daily\nschedule: "@daily"\ncommand: [echo, "{}"]\nretry_condition: exitCode != 50\n'),
    );
    expect(one).toEqual({
      documents: [{ id: 'daily', schedule: '@daily', command: ['echo', '{}'], retry_condition: 'exitCode != 50' }],
      names: ['workflow "daily"'],
      many: false,
    });
    const many = await loadWorkflowDocuments(await file('wfs.yaml', 'id: a\nschedule: hourly\n---\nschedule: daily\n'));
    expect(many.documents).toHaveLength(2);
    // A document without an id is named by its place, for the server's "id: required".
    expect(many.names).toEqual(['workflow "a"', `${join(dir, 'wfs.yaml')}[1]`]);
    expect(many.many).toBe(true);
  });

  it('keeps the schedule fields as text', () => {
    // YAML 1.1 would read the date as a timestamp; the core schema leaves it a string.
    const { documents } = workflowDocuments(
      parseDocuments('id: m\nschedule: 0 5 * * *\nstart: 2024-01-01\n', 'w.yaml'),
      'w.yaml',
    );
    expect(documents[0]).toEqual({ id: 'm', schedule: '0 5 * * *', start: '2024-01-01' });
  });

  it('rejects what cannot be a workflow', () => {
    expect(() => workflowDocuments({ values: [], many: false }, 'w.yaml')).toThrow(
      'w.yaml: no workflow document found',
    );
    expect(() => workflowDocuments({ values: [{ id: 'a' }, 5], many: true }, 'w.yaml')).toThrow(
      'w.yaml[1]: a workflow document must be a mapping',
    );
    expect(() =>
      workflowDocuments({ values: [{ id: 'a', env: { K: Buffer.from('x') } }], many: false }, 'w.yaml'),
    ).toThrow('w.yaml: a workflow document may hold only JSON values');
    expect(() => workflowDocuments({ values: [{ id: 'a' }, { id: 'b' }, { id: 'a' }], many: true }, 'w.json')).toThrow(
      'w.json[2]: workflow "a" is also defined at w.json[0]',
    );
  });
});
