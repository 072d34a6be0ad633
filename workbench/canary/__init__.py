"""`wb serve`: a canary endpoint. An OpenAI-compatible chat-completions router on loopback in front of a baseline
and a candidate model (routing), each an upstream OpenAI-compatible server (upstream), logging every exchange to the
store in the format `wb replay` reads (log, completion) from a Starlette app on uvicorn (app, server)."""
