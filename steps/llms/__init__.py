"""One distilabel LLM class per engine kind (datatrove's `inference/servers/` layout).

    base.py               what every engine takes (`Prompt`) and returns (outputs with `errors`)
    resilience.py         retries with backoff and the circuit breaker of server engines
    llamacpp.py           llama.cpp in process (the embedded model and any local GGUF)
    openai_compatible.py  any OpenAI-compatible server
    batched_decoding.py   many llama.cpp sequences decoded together (the llama.cpp engine's core)
    tokenizer.py          how long a text is for an engine (seeds are cut to its context)

`steps.engines` chooses among them (its table of engine kinds); nothing else names a class.
"""
