import { credentials, type ChannelOptions, type ServiceError } from '@grpc/grpc-js';
import {
  AlgorithmStoreClient,
  BackfillsClient,
  ClosuresClient,
  ConcurrencyLimitsClient,
  InstancesClient,
  JobsClient,
  PipelineStoreClient,
  SecretsClient,
  VolumesClient,
  WorkflowsClient,
} from '@weft/proto';

// Results of a large batch can exceed grpc-js's 4 MiB default; the CLI would
// rather print them than fail.
const CHANNEL_OPTIONS: ChannelOptions = { 'grpc.max_receive_message_length': -1 };

/**
 * The gRPC clients of one invocation, created on first use. All share the
 * address; close() releases their channels so the process can exit.
 */
export class Clients {
  private algorithmsClient: AlgorithmStoreClient | undefined;
  private pipelinesClient: PipelineStoreClient | undefined;
  private jobsClient: JobsClient | undefined;
  private workflowsClient: WorkflowsClient | undefined;
  private instancesClient: InstancesClient | undefined;
  private backfillsClient: BackfillsClient | undefined;
  private resourcesClient: ConcurrencyLimitsClient | undefined;

  constructor(
    /** HOST:PORT of the control plane. */
    readonly address: string,
  ) {}

  /** The AlgorithmStore service. */
  get algorithms(): AlgorithmStoreClient {
    this.algorithmsClient ??= new AlgorithmStoreClient(this.address, credentials.createInsecure(), CHANNEL_OPTIONS);
    return this.algorithmsClient;
  }

  /** The PipelineStore service. */
  get pipelines(): PipelineStoreClient {
    this.pipelinesClient ??= new PipelineStoreClient(this.address, credentials.createInsecure(), CHANNEL_OPTIONS);
    return this.pipelinesClient;
  }

  /** The Jobs service. */
  get jobs(): JobsClient {
    this.jobsClient ??= new JobsClient(this.address, credentials.createInsecure(), CHANNEL_OPTIONS);
    return this.jobsClient;
  }

  /** The Workflows service (scheduled workflows). */
  get workflows(): WorkflowsClient {
    this.workflowsClient ??= new WorkflowsClient(this.address, credentials.createInsecure(), CHANNEL_OPTIONS);
    return this.workflowsClient;
  }

  /** The Instances service (one run of a workflow per parameter). */
  get instances(): InstancesClient {
    this.instancesClient ??= new InstancesClient(this.address, credentials.createInsecure(), CHANNEL_OPTIONS);
    return this.instancesClient;
  }

  /** The Backfills service. */
  get backfills(): BackfillsClient {
    this.backfillsClient ??= new BackfillsClient(this.address, credentials.createInsecure(), CHANNEL_OPTIONS);
    return this.backfillsClient;
  }

  /** The ConcurrencyLimits service (resources). */
  get resources(): ConcurrencyLimitsClient {
    this.resourcesClient ??= new ConcurrencyLimitsClient(this.address, credentials.createInsecure(), CHANNEL_OPTIONS);
    return this.resourcesClient;
  }

  private secretsClient: SecretsClient | undefined;
  private volumesClient: VolumesClient | undefined;
  private closuresClient: ClosuresClient | undefined;

  /** The Closures service, whose content-addressed upload calls stage algorithm code too. */
  get closures(): ClosuresClient {
    this.closuresClient ??= new ClosuresClient(this.address, credentials.createInsecure(), CHANNEL_OPTIONS);
    return this.closuresClient;
  }

  /** The Secrets service. */
  get secrets(): SecretsClient {
    this.secretsClient ??= new SecretsClient(this.address, credentials.createInsecure(), CHANNEL_OPTIONS);
    return this.secretsClient;
  }

  /** The Volumes service. */
  get volumes(): VolumesClient {
    this.volumesClient ??= new VolumesClient(this.address, credentials.createInsecure(), CHANNEL_OPTIONS);
    return this.volumesClient;
  }

  /** Closes every channel opened so far. */
  close(): void {
    this.secretsClient?.close();
    this.volumesClient?.close();
    this.closuresClient?.close();
    this.algorithmsClient?.close();
    this.pipelinesClient?.close();
    this.jobsClient?.close();
    this.workflowsClient?.close();
    this.instancesClient?.close();
    this.backfillsClient?.close();
    this.resourcesClient?.close();
  }
}

/**
 * Turns a callback-style unary call into a promise:
 * `await unary<Algorithm>((cb) => client.get({ name }, cb))`.
 */
export function unary<T>(start: (callback: (err: ServiceError | null, res: T) => void) => unknown): Promise<T> {
  return new Promise<T>((resolve, reject) => {
    start((err, res) => {
      if (err) reject(err);
      else resolve(res);
    });
  });
}
