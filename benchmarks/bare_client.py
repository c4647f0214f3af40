"""The bare client that `benchmarks/engine.py` (e) times modelbench against: what a user would write
to send the same prompts without a harness. Frozen on purpose: change it and old ratios stop
comparing.

    python benchmarks/bare_client.py BASE_URL PROMPTS.jsonl CONCURRENCY

`openai.AsyncOpenAI`, a semaphore of CONCURRENCY, `chat.completions.create` per prompt, the SDK's
default transport, answers kept in memory; the whole process is what gets timed.
"""

import asyncio
import json
import sys

import openai


async def main(base_url: str, path: str, concurrency: int) -> None:
    with open(path, encoding="utf-8") as lines:
        prompts = [json.loads(line)["prompt_text"] for line in lines if line.strip()]
    client = openai.AsyncOpenAI(base_url=base_url, api_key="EMPTY", max_retries=4)
    limit = asyncio.Semaphore(concurrency)

    async def one(prompt: str) -> str | None:
        async with limit:
            reply = await client.chat.completions.create(
                model="mock", messages=[{"role": "user", "content": prompt}], max_tokens=128
            )
            return reply.choices[0].message.content

    answers = await asyncio.gather(*(one(p) for p in prompts))
    print(f"{len(answers)} answers")


if __name__ == "__main__":
    asyncio.run(main(sys.argv[1], sys.argv[2], int(sys.argv[3])))
