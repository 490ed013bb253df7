"""One distilabel LLM class per engine kind (datatrove's `inference/servers/` layout).

    base.py               what every engine takes (`Prompt`) and returns (outputs with `errors`)
    resilience.py         retries with backoff and the circuit breaker of server engines
    llamacpp.py           llama.cpp in process (the embedded model and any local GGUF)
    openai_compatible.py  any OpenAI-compatible server

`steps.engines` chooses among them (its table of engine kinds); nothing else names a class.
"""
