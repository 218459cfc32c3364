"""A user's script that .ci/run type-checks with mypy --strict against the installed package."""
import pathlib
from typing import List, Optional

import friendli_image as fi


def fox(client: fi.Client, model: str) -> List[pathlib.Path]:
    result: fi.ImageGenerationResult = client.generate(model=model, prompt="a red fox", seed=7, response_format="png")
    first: fi.GeneratedImage = result.data[0]
    seed: Optional[int] = first.seed
    data: bytes = first.content()
    print(seed, len(data), result.request_id)
    return [first.save("fox.png")] + result.save_all("out")


def main() -> int:
    try:
        with fi.Client(timeout=30.0) as client:
            fox(client, "my-endpoint:my-adapter")
    except fi.FriendliError as exc:
        print("failed:", exc)
        return 1
    return 0
