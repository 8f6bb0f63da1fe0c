"""The speculative decoding core: the generation loop, token trees, lossless
verification, sampling, acceptance estimates, tree sizing on the cost model, statistics,
events, and the Drafter interface the loop consumes.

May import `engine.llama`, `engine.errors`, `engine.settings`; never the drafters,
models, runtime or anything above."""
