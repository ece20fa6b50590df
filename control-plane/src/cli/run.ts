import { parseCommandLine, resolveServer } from './args.js';
import { Clients } from './client.js';
import { algorithmApply, algorithmDelete, algorithmGet, algorithmList } from './commands/algorithm.js';
import { backfillCreate, backfillEdit, backfillHalt, backfillList, backfillShow } from './commands/backfill.js';
import {
  execFromNode,
  execGraph,
  execList,
  execPause,
  execRaw,
  execRerun,
  execResult,
  execResume,
  execStatus,
  execStop,
  execStored,
  execWatch,
} from './commands/exec.js';
import { instanceHalt, instanceList, instanceRetry, instanceShow } from './commands/instance.js';
import { pipelineDelete, pipelineGet, pipelineList, pipelineStore } from './commands/pipeline.js';
import { resourceCreate, resourceDelete, resourceEdit, resourceList } from './commands/resource.js';
import { secretCreate, secretDelete, secretList, volumeDelete, volumeList } from './commands/secret.js';
import { server } from './commands/server.js';
import {
  workflowApply,
  workflowDelete,
  workflowDisable,
  workflowEnable,
  workflowGet,
  workflowList,
  workflowTrigger,
} from './commands/workflow.js';
import type { Handler, Io } from './context.js';
import { CliError, describeError } from './errors.js';
import { helpText } from './help.js';

/** The handler of each command, keyed by its words (`'exec raw'`). */
export const HANDLERS: Readonly<Record<string, Handler>> = {
  server,
  'algorithm apply': algorithmApply,
  'algorithm get': algorithmGet,
  'algorithm ls': algorithmList,
  'algorithm delete': algorithmDelete,
  'pipeline store': pipelineStore,
  'pipeline get': pipelineGet,
  'pipeline ls': pipelineList,
  'pipeline delete': pipelineDelete,
  'exec raw': execRaw,
  'exec stored': execStored,
  'exec status': execStatus,
  'exec result': execResult,
  'exec graph': execGraph,
  'exec pause': execPause,
  'exec resume': execResume,
  'exec rerun': execRerun,
  'exec from-node': execFromNode,
  'exec stop': execStop,
  'exec watch': execWatch,
  'exec ls': execList,
  'workflow apply': workflowApply,
  'workflow get': workflowGet,
  'workflow ls': workflowList,
  'workflow delete': workflowDelete,
  'workflow enable': workflowEnable,
  'workflow disable': workflowDisable,
  'workflow trigger': workflowTrigger,
  'instance ls': instanceList,
  'instance show': instanceShow,
  'instance halt': instanceHalt,
  'instance retry': instanceRetry,
  'backfill create': backfillCreate,
  'backfill ls': backfillList,
  'backfill show': backfillShow,
  'backfill edit': backfillEdit,
  'backfill halt': backfillHalt,
  'resource create': resourceCreate,
  'resource ls': resourceList,
  'resource edit': resourceEdit,
  'resource delete': resourceDelete,
  'secret create': secretCreate,
  'secret ls': secretList,
  'secret delete': secretDelete,
  'volume ls': volumeList,
  'volume delete': volumeDelete,
};

/**
 * Runs `weft` with the arguments after the program name and resolves to the
 * exit code. Never throws: errors become one `weft: ...` line on stderr.
 */
export async function run(
  argv: readonly string[],
  io: Io,
  env: Readonly<Record<string, string | undefined>>,
): Promise<number> {
  let address = resolveServer(undefined, env);
  try {
    const invocation = parseCommandLine(argv, env);
    if (invocation.kind === 'help') {
      (invocation.exitCode === 0 ? io.stdout : io.stderr).write(helpText(invocation.path));
      return invocation.exitCode;
    }
    address = invocation.server;
    const key = invocation.command.path.join(' ');
    const handler = HANDLERS[key];
    if (!handler) throw new Error(`no handler for "${key}"`);
    const clients = new Clients(address);
    try {
      return await handler({
        io,
        args: invocation.args,
        flags: invocation.flags,
        output: invocation.output,
        server: address,
        clients,
      });
    } finally {
      clients.close();
    }
  } catch (err) {
    const { message, exitCode } = describeError(err, address);
    io.stderr.write(`weft: ${message}\n`);
    // WEFT_DEBUG shows the stack of what went wrong underneath, never of a plain user error.
    const underlying = err instanceof CliError ? err.cause : err;
    if (env['WEFT_DEBUG'] && underlying instanceof Error && underlying.stack) io.stderr.write(`${underlying.stack}\n`);
    return exitCode;
  }
}
