"""A second bare client for `benchmarks/engine.py` (e): the floor of a hand-written HTTP loop.

    python benchmarks/bare_aiohttp.py BASE_URL PROMPTS.jsonl CONCURRENCY

`aiohttp` with one session and a connector of CONCURRENCY connections, a semaphore of
CONCURRENCY, one POST of a chat completion per prompt, answers kept in memory; no retries, no
store, no grading. Where `bare_client.py` (the openai SDK) spends CPU per request, this spends
almost none, so its wall time is what the network and the server allow: modelbench's whole
process against it says what the harness costs beyond the wait. Frozen on purpose, like
`bare_client.py`.
"""

import asyncio
import json
import sys

import aiohttp


async def main(base_url: str, path: str, concurrency: int) -> None:
    with open(path, encoding="utf-8") as lines:
        prompts = [json.loads(line)["prompt_text"] for line in lines if line.strip()]
    limit = asyncio.Semaphore(concurrency)
    url = base_url.rstrip("/") + "/chat/completions"
    connector = aiohttp.TCPConnector(limit=concurrency)
    headers = {"Authorization": "Bearer EMPTY"}
    async with aiohttp.ClientSession(connector=connector, headers=headers) as session:

        async def one(prompt: str) -> str | None:
            body = {"model": "mock", "messages": [{"role": "user", "content": prompt}], "max_tokens": 128}
            async with limit, session.post(url, json=body) as reply:
                reply.raise_for_status()
                return (await reply.json())["choices"][0]["message"]["content"]

        answers = await asyncio.gather(*(one(p) for p in prompts))
    print(f"{len(answers)} answers")


if __name__ == "__main__":
    asyncio.run(main(sys.argv[1], sys.argv[2], int(sys.argv[3])))
