#!/usr/bin/env python3
"""weft's gRPC API from Python: store a pipeline, run it, watch it, print the result.

    ./gen.sh                              # stubs from proto/ into ./gen
    /usr/bin/python3 client.py --server 127.0.0.1:50051

It stores HKube's numbers pipeline (Range -> Multiply per element -> Reduce)
under the algorithm names given with --algorithms (the examples' Node ones by
default; `range-py,multiply-mixed,reduce-py` for the mixed-language ones), runs
it with a msgpack flow input, prints the Watch stream, and decodes the result,
which is msgpack in LeafResult.result.inline.

Needs grpcio, protobuf and msgpack (Debian: python3-grpcio python3-protobuf python3-msgpack).
"""

import argparse
import os
import sys

import grpc
import msgpack

HERE = os.path.dirname(os.path.abspath(__file__))


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--server", default=os.environ.get("WEFT_SERVER", "127.0.0.1:50051"))
    ap.add_argument("--stubs", default=os.environ.get("WEFT_PY_STUBS") or os.path.join(HERE, "gen"))
    ap.add_argument("--name", default="numbers-from-python", help="name to store the pipeline under")
    ap.add_argument("--algorithms", default="range,multiply,reduce", help="Range, Multiply and Reduce algorithms")
    ap.add_argument("--data", type=int, default=5)
    ap.add_argument("--mul", type=int, default=2)
    args = ap.parse_args()

    # The generated modules import each other as weft.v1.*: their root goes on sys.path.
    sys.path.insert(0, args.stubs)
    try:
        from weft.v1 import jobs_pb2, jobs_pb2_grpc, pipelines_pb2, pipelines_pb2_grpc
    except ImportError as e:
        print("no stubs in %s (%s): run ./gen.sh first" % (args.stubs, e), file=sys.stderr)
        return 2

    range_alg, multiply_alg, reduce_alg = args.algorithms.split(",")
    pipeline = pipelines_pb2.PipelineDescriptor(name=args.name, description="numbers, from a Python client")
    for node_name, algorithm, inputs in (
        ("Range", range_alg, ["@flowInput.data"]),
        ("Multiply", multiply_alg, ["#@Range", "@flowInput.mul"]),
        ("Reduce", reduce_alg, ["@Multiply"]),
    ):
        node = pipeline.nodes.add(node_name=node_name, algorithm_name=algorithm)
        node.input.extend(inputs)  # a google.protobuf.ListValue
    # The stored default; the run below passes its own flow input as msgpack (integers stay integers).
    pipeline.flow_input.update({"data": 5, "mul": 2})

    with grpc.insecure_channel(args.server) as channel:
        pipelines = pipelines_pb2_grpc.PipelineStoreStub(channel)
        jobs = jobs_pb2_grpc.JobsStub(channel)

        pipelines.Store(pipelines_pb2.StorePipelineRequest(pipeline=pipeline))
        print("stored pipeline %s" % args.name)
        flow_input = msgpack.packb({"data": args.data, "mul": args.mul}, use_bin_type=True)
        job_id = jobs.ExecStored(jobs_pb2.ExecStoredRequest(name=args.name, flow_input_msgpack=flow_input)).job_id
        print("started job %s" % job_id)

        # The first event is the full status; the stream ends after the final one.
        for event in jobs.Watch(jobs_pb2.JobRef(job_id=job_id)):
            kind = event.WhichOneof("event")
            if kind == "progress":
                p = event.progress
                print("  %s: %.0f%% %s" % (p.node_name, p.percent, p.message))
            elif kind == "node":
                n = event.node
                print("  %s %d/%d" % (n.node_name, n.succeeded, n.total))
            elif kind == "status":
                s = event.status
                print("  job %s %.0f%%" % (jobs_pb2.JobState.Name(s.state), s.progress))

        result = jobs.GetResult(jobs_pb2.JobRef(job_id=job_id))
        if result.state != jobs_pb2.JOB_STATE_COMPLETED:
            print("job %s ended %s: %s" % (job_id, jobs_pb2.JobState.Name(result.state), result.error))
            return 1
        for leaf in result.results:
            if leaf.result.WhichOneof("kind") == "ref":
                value = "<stored blob %s, %d bytes>" % (leaf.result.ref.key, leaf.result.ref.size)
            elif leaf.result.inline:
                value = msgpack.unpackb(leaf.result.inline, raw=False, strict_map_key=False)
            else:
                value = None  # an empty payload is nil
            label = leaf.node_name if leaf.batch_index < 0 else "%s#%d" % (leaf.node_name, leaf.batch_index)
            print("%s: %r" % (label, value))
    return 0


if __name__ == "__main__":
    sys.exit(main())
