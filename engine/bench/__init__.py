"""`tandem bench`: side-by-side benchmark of speculation arms, and the offline
replay of speculation policies on recorded traces (issue 5 §1-2).  A top layer: may
import anything in the engine but the CLI.

Modules, one job each:
  suites        prompt suites (ours, HumanEval, MT-bench JSONL)
  results       RunResult (one arm on one prompt) and arm names
  engine_arm    Tandem's arms through Engine.generate_tokens
  lookup_arm    llama-cpp-python's LlamaPromptLookupDecoding (child process: lookup_worker)
  peer_arm      llama.cpp's own binaries (scripts/build_peer_llama.sh)
  equivalence   same output as plain decoding, up to near-ties
  runner        the interleaved loop
  summary, tables, chart, output   aggregation and the files written
  trace, record                    traces of the target's replies with the draft's top-k
  replay, policies, oracle, replay_report   the offline simulator, policies, ceilings, tables
"""
