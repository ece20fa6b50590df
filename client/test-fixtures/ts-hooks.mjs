// Module hooks that let Node 20 run the TypeScript in tests, as tsx would:
// a relative `./x.js` that does not exist loads `./x.ts` instead, and `.ts`
// files are transpiled (no type checking). Tests use them for the fixture
// project's TypeScript module and for running client/src in child processes.
import { readFile } from 'node:fs/promises';
import { fileURLToPath } from 'node:url';
import ts from 'typescript';

const TS_URL = /\.[cm]?tsx?$/;

export async function resolve(specifier, context, nextResolve) {
  try {
    return await nextResolve(specifier, context);
  } catch (err) {
    const relative = specifier.startsWith('./') || specifier.startsWith('../');
    if (err?.code !== 'ERR_MODULE_NOT_FOUND' || !relative || !/\.[cm]?js$/.test(specifier)) throw err;
    return nextResolve(specifier.replace(/js$/, 'ts'), context);
  }
}

export async function load(url, context, nextLoad) {
  if (!url.startsWith('file:') || !TS_URL.test(new URL(url).pathname)) return nextLoad(url, context);
  const fileName = fileURLToPath(url);
  const out = ts.transpileModule(await readFile(fileName, 'utf8'), {
    fileName,
    compilerOptions: {
      target: ts.ScriptTarget.ES2022,
      module: ts.ModuleKind.ESNext,
      rewriteRelativeImportExtensions: true,
    },
  });
  return { format: 'module', source: out.outputText, shortCircuit: true };
}
