"""One admin-path member import, run as a child process by bench/members.py.

`python -m bench.members_admin_run PATH PROGRAM [--untuned] [--rows N]` reads
PATH the way the admin does (MemberCsvFormat -> tablib Dataset) and imports
it with django-import-export: the tuned MemberResource (preview = dry run,
then the confirmation), or, with --untuned, the same checks through
django-import-export's defaults (bench/members_untuned.py). Prints one JSON
line with the seconds of each step.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import time


def main(argv: list[str]) -> int:
    parser = argparse.ArgumentParser()
    parser.add_argument("path")
    parser.add_argument("program")
    parser.add_argument("--untuned", action="store_true")
    parser.add_argument("--rows", type=int, default=0, help="only the first N rows")
    args = parser.parse_args(argv)
    os.environ.setdefault("DJANGO_SETTINGS_MODULE", "loyalty_site.settings")
    import django

    django.setup()
    from accounts.resources import MemberCsvFormat, MemberResource
    from programs.models import Program

    program = Program.objects.get(code=args.program)
    started = time.perf_counter()
    with open(args.path, "rb") as f:
        dataset = MemberCsvFormat().create_dataset(f.read())
    if args.rows:
        del dataset[args.rows :]
    read = time.perf_counter() - started
    figures: dict[str, float | int] = {"rows": len(dataset), "read_s": read}
    if args.untuned:
        from bench.members_untuned import UntunedMemberResource

        started = time.perf_counter()
        result = UntunedMemberResource(program=program).import_data(dataset, dry_run=False)
        figures["import_s"] = time.perf_counter() - started
        figures["errors"] = len(result.base_errors)
    else:
        digest: dict[str, str] = {}
        started = time.perf_counter()
        MemberResource(
            program=program, on_plan=lambda s: digest.setdefault("d", s.digest)
        ).import_data(dataset, dry_run=True)
        figures["preview_s"] = time.perf_counter() - started
        started = time.perf_counter()
        result = MemberResource(program=program, expected_digest=digest["d"]).import_data(
            dataset, dry_run=False
        )
        figures["import_s"] = time.perf_counter() - started
        figures["errors"] = len(result.base_errors)
        figures["created"] = result.member_summary.created
    print(json.dumps(figures))
    return 0


if __name__ == "__main__":
    raise SystemExit(main(sys.argv[1:]))
