// Hype's "full example" on weft: a function that runs a command where it is
// sent, and reports what that place looks like. Run it with a control plane
// up (npm start) and the secret created:
//   npx weft secret create gcp-key --from-file key.json
//   node examples/closures/dist/full.js
import { execSync } from 'node:child_process';
import { pathToFileURL } from 'node:url';
import { RunEnvironment, Submitter } from '@weft/client';

export interface EnvVar {
  name: string;
  value: string;
}

export interface Res {
  cmdOutput: string;
  mounts: string;
  vars: EnvVar[];
}

export function extractEnv(cmd: string): Res {
  const cmdOutput = execSync(cmd).toString();
  const mounts = execSync('df -h').toString();
  const vars = Object.entries(process.env).map(([name, value]) => ({ name, value: value ?? '' }));
  return { cmdOutput, mounts, vars };
}

// The worker imports this module to find extractEnv: only a script run does the submitting.
if (import.meta.url === pathToFileURL(process.argv[1] ?? '').href) {
  const submitter = new Submitter();
  const env = RunEnvironment.defaults().withSecret('gcp-key', '/tmp/weft-example/gcloud'); // weft secret create gcp-key …

  const res = await submitter.submit(extractEnv, ['uname -a'], env);

  console.log(res.cmdOutput.trim());
  console.log(res.mounts.trim().split('\n')[0]);
  for (const v of res.vars.filter((x) => /^(WEFT|HYPE)_/.test(x.name))) console.log(`${v.name}=${v.value}`);
  await submitter.close();
}
