"""The cashier benchmark's rounds: set-ups parsed, medians per set-up (python -m bench pos)."""

from __future__ import annotations

import pytest

from bench.pos import _medians, _setups


def test_setups_read_as_workers_by_threads() -> None:
    assert _setups("6x1, 2X3") == [(6, 1), (2, 3)]


@pytest.mark.parametrize("text", ["6", "6x", "sixx1", "6x1x2"])
def test_a_malformed_setup_is_refused_with_the_expected_form(text: str) -> None:
    with pytest.raises(SystemExit, match="WORKERSxTHREADS"):
        _setups(text)


def _run(figure: float, rate: float, p99: float, web: float | None) -> dict[str, object]:
    return {
        "workers": 6,
        "threads": 1,
        "figure": figure,
        "purchases_per_s": rate,
        "p50_ms": 40.0,
        "p99_ms": p99,
        "quotes_per_s": 900.0,
        "cpu_ms_per_purchase": {"web": web, "postgres": 1.8, "client": 0.3},
    }


def test_medians_are_taken_per_figure_across_the_rounds() -> None:
    # Each median comes from a different round: a slow round must not set them all.
    runs = [_run(0.09, 300, 120.0, 4.0), _run(0.11, 380, 60.0, None), _run(0.10, 340, 80.0, 3.5)]
    summary = _medians(runs)
    assert summary["runs"] == 3
    assert summary["figure"] == 0.10
    assert summary["purchases_per_s"] == 340
    assert summary["p99_ms"] == 80.0
    # A run whose web CPU was not measured is left out, not counted as zero.
    assert summary["cpu_ms_per_purchase"] == {"web": 3.75, "postgres": 1.8, "client": 0.3}
    assert summary["ceiling"] is None  # rounds run without --ceiling


@pytest.mark.django_db(transaction=True)
def test_the_in_process_run_takes_real_purchases_and_quotes(settings, capsys) -> None:  # type: ignore[no-untyped-def]
    from bench.pos import PROGRAM, in_process
    from pos.models import Purchase

    settings.API_THROTTLE_RATE = "100000/second"
    in_process(5)
    out = capsys.readouterr().out
    assert "a purchase takes" in out and "a quote takes" in out
    # 20 warm-up purchases and the 5 measured ones, each with its points redeemed
    purchases = Purchase.objects.filter(program__code=PROGRAM)
    assert purchases.count() == 25
    assert all(p.redeemed_points == 10 for p in purchases)


def test_the_figure_from_cpu_and_the_ceiling_add_up_the_measured_shares() -> None:
    from bench.pos import _figures_from_cpu

    run = {
        "cpu_ms_per_pgbench_tx": {"postgres": 0.45, "pgbench": 0.05},
        "cpu_ms_per_purchase": {"web": 3.0, "postgres": 1.6, "client": 0.4},
        "cpu_ms_per_null_request": {"web": 0.3, "client": 0.1},
    }
    # 0.5 ms a pgbench transaction against 5 ms a purchase, and 2 ms with no Python of ours
    assert _figures_from_cpu(run) == {"cpu_figure": 0.1, "ceiling": 0.25}
    # A part not measured (a database on another machine) gives no figure rather than a wrong one
    run["cpu_ms_per_purchase"]["postgres"] = None
    run["cpu_ms_per_null_request"] = None
    assert _figures_from_cpu(run) == {"cpu_figure": None, "ceiling": None}


def test_the_null_app_reads_the_request_and_answers_like_a_purchase() -> None:
    import io
    import json

    from bench.null_app import application

    body = b'{"receipt_number": "R-1"}' * 10
    request = io.BytesIO(body)
    seen: list[tuple[str, list[tuple[str, str]]]] = []
    environ = {"wsgi.input": request, "CONTENT_LENGTH": str(len(body))}
    answer = b"".join(application(environ, lambda status, headers: seen.append((status, headers))))
    assert request.tell() == len(body)
    assert seen[0][0] == "201 Created"
    assert dict(seen[0][1])["Content-Length"] == str(len(answer))
    assert json.loads(answer)["status"] == "completed"


@pytest.mark.django_db(transaction=True)
def test_the_null_app_answers_what_the_api_answers_the_same_request(settings) -> None:  # type: ignore[no-untyped-def]
    # gunicorn and the clients cost by the bytes and headers they move: the do-nothing
    # app must move what a real purchase does, or the ceiling measures something else.
    from django.test import Client

    from bench.null_app import BODY, HEADERS
    from bench.pos import _receipt, prepare

    settings.API_THROTTLE_RATE = "100000/second"
    key, cards = prepare(1)
    response = Client().post(
        "/api/v1/purchases",
        _receipt(cards[0], "R-size", 10),
        content_type="application/json",
        headers={"Authorization": f"Token {key}", "Idempotency-Key": "size-1"},
    )
    assert response.status_code == 201
    assert abs(len(BODY) - len(response.content)) < 0.1 * len(response.content)
    assert {name for name, _value in HEADERS} == set(response.headers)


def test_an_answer_is_whole_only_with_all_its_body() -> None:
    from bench.pos import _answer_status

    head = b"HTTP/1.1 201 Created\r\nContent-Length: 4\r\nConnection: close\r\n\r\n"
    assert _answer_status(bytearray(head[:20])) is None
    assert _answer_status(bytearray(head + b"{}")) is None
    assert _answer_status(bytearray(head + b"{}{}")) == (201, True)
    kept = b"HTTP/1.1 409 Conflict\r\ncontent-length: 0\r\n\r\n"
    assert _answer_status(bytearray(kept)) == (409, False)


def test_the_clients_drive_a_real_gunicorn_and_count_every_answer() -> None:
    from bench.pos import _free_port, _stop, drive, start_api

    port = _free_port()
    server = start_api(1, port, app="bench.null_app")
    try:
        ok, latencies, statuses = drive(port, "k", ["C1", "C2"], 2, 0.5, "/p", 201)
    finally:
        _stop(server)
    assert ok > 10 and statuses == {201: ok}
    assert len(latencies) == ok and all(0 < t < 5 for t in latencies)
    # Nobody listening: each attempt is counted as a failure (status 0), none hangs.
    ok, latencies, statuses = drive(port, "k", ["C1", "C2"], 2, 0.2, "/p", 201)
    assert ok == 0 and set(statuses) == {0} and len(latencies) == statuses[0]


def test_python_m_bench_lists_the_benchmarks_not_their_helpers(capsys) -> None:  # type: ignore[no-untyped-def]
    from bench.__main__ import main

    assert main([]) == 0
    listed = capsys.readouterr().out.split("benchmarks: ")[1].strip().split(", ")
    assert "pos" in listed and "ledger" in listed
    assert not {"common", "null_app", "members_data"} & set(listed)
    # A helper's name is refused like any unknown name, not run into a traceback.
    assert main(["null_app"]) == 2
