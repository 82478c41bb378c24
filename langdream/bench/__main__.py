"""``python -m langdream.bench`` is ``langdream bench``."""

from langdream.cli import main

if __name__ == "__main__":
    main(["bench", *__import__("sys").argv[1:]])
