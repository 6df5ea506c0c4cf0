"""Signing in with the phone and a one-time SMS code, on the pages and in the app API."""

from __future__ import annotations

import datetime
import json

import pytest
from django.db import connection
from django.test import Client
from django.test.utils import CaptureQueriesContext
from django.utils import timezone

from portal import services
from portal.models import MemberSession, SignInCode, SignInFailure
from tests.pos.factories import member_create, next_phone, program_create

pytestmark = pytest.mark.django_db


@pytest.fixture
def program():  # type: ignore[no-untyped-def]
    return program_create()


@pytest.fixture
def member(program):  # type: ignore[no-untyped-def]
    return member_create(program=program, first_name="Anna")


def ask_code(client: Client, program, phone: str, commit):  # type: ignore[no-untyped-def]
    """Post the phone form; `commit` runs what the real commit would (the SMS task)."""
    with commit(execute=True):
        return client.post(f"/my/sign-in/?program={program.code}", {"phone": phone})


def enter_code(client: Client, code: str):  # type: ignore[no-untyped-def]
    return client.post("/my/sign-in/code/", {"code": code})


def test_a_member_signs_in_with_the_code_from_the_sms_and_sees_their_balance(
    program, member, sms, django_capture_on_commit_callbacks
) -> None:  # type: ignore[no-untyped-def]
    client = Client()
    response = ask_code(
        client, program, "8 912 " + member.phone[5:], django_capture_on_commit_callbacks
    )
    assert response.status_code == 302
    assert response["Location"] == "/my/sign-in/code/"
    assert len(sms.to(member.phone)) == 1
    response = enter_code(client, sms.code(member.phone))
    assert response.status_code == 302 and response["Location"] == "/my/"
    page = client.get("/my/")
    assert page.status_code == 200
    assert "Hello, Anna" in page.content.decode()
    assert 'id="available">0<' in page.content.decode()


def test_the_code_is_stored_only_as_a_keyed_hash(
    program, member, sms, django_capture_on_commit_callbacks
) -> None:  # type: ignore[no-untyped-def]
    ask_code(Client(), program, member.phone, django_capture_on_commit_callbacks)
    code = sms.code(member.phone)
    row = SignInCode.objects.get(phone=member.phone)
    assert code not in row.code_hash
    assert len(row.code_hash) == 64


def test_an_unknown_phone_gets_the_same_answer_and_the_same_work_but_no_sms(
    program, member, sms, django_capture_on_commit_callbacks
) -> None:  # type: ignore[no-untyped-def]
    stranger = next_phone()
    answers = []
    for phone in (member.phone, stranger):
        client = Client()
        first = ask_code(client, program, phone, django_capture_on_commit_callbacks)
        second = client.get("/my/sign-in/code/")
        assert "If +7 *** ***-" in second.content.decode()
        answers.append((first.status_code, first["Location"], second.status_code))
    assert answers[0] == answers[1]
    assert sms.to(stranger) == []
    assert len(sms.to(member.phone)) == 1
    # Whatever is typed for the stranger's phone, nobody is signed in.
    client = Client()
    ask_code(client, program, next_phone(), django_capture_on_commit_callbacks)
    for guess in ("000000", "123456"):
        assert "wrong or has expired" in enter_code(client, guess).content.decode()
    assert not MemberSession.objects.exists()


def test_an_unknown_phone_does_the_same_queries_before_the_answer(
    program, member, sms, django_capture_on_commit_callbacks
) -> None:  # type: ignore[no-untyped-def]
    counts = []
    for phone in (member.phone, next_phone()):
        with CaptureQueriesContext(connection) as queries:
            with django_capture_on_commit_callbacks(execute=False):
                services.code_request(program=program, phone=phone, ip="10.0.0.1")
        counts.append([q["sql"].split()[0] for q in queries.captured_queries])
    assert counts[0] == counts[1]


def test_the_api_answers_202_with_the_same_body_for_a_member_and_for_nobody(
    program, member, sms, django_capture_on_commit_callbacks
) -> None:  # type: ignore[no-untyped-def]
    bodies = []
    for phone in (member.phone, next_phone()):
        with django_capture_on_commit_callbacks(execute=True):
            response = Client().post(
                "/api/v1/me/sign-in/code",
                json.dumps({"phone": phone, "program": program.code}),
                content_type="application/json",
            )
        assert response.status_code == 202
        bodies.append(response.content)
    assert bodies[0] == bodies[1]
    assert len(sms.sent) == 1


def test_a_wrong_code_is_refused_and_the_right_one_still_works(
    program, member, sms, django_capture_on_commit_callbacks
) -> None:  # type: ignore[no-untyped-def]
    client = Client()
    ask_code(client, program, member.phone, django_capture_on_commit_callbacks)
    code = sms.code(member.phone)
    wrong = "000000" if code != "000000" else "111111"
    response = enter_code(client, wrong)
    assert response.status_code == 200
    assert "The code is wrong or has expired" in response.content.decode()
    assert SignInFailure.objects.filter(phone=member.phone).count() == 1
    assert enter_code(client, code)["Location"] == "/my/"


def test_a_code_is_burnt_after_five_wrong_guesses(
    program, member, sms, django_capture_on_commit_callbacks
) -> None:  # type: ignore[no-untyped-def]
    client = Client()
    ask_code(client, program, member.phone, django_capture_on_commit_callbacks)
    code = sms.code(member.phone)
    wrong = "000000" if code != "000000" else "111111"
    for _ in range(5):
        enter_code(client, wrong)
    response = enter_code(client, code)
    assert "The code is wrong or has expired" in response.content.decode()
    assert SignInCode.objects.get(phone=member.phone).attempts == 5


def test_an_expired_code_is_refused(
    program, member, sms, django_capture_on_commit_callbacks
) -> None:  # type: ignore[no-untyped-def]
    client = Client()
    ask_code(client, program, member.phone, django_capture_on_commit_callbacks)
    SignInCode.objects.filter(phone=member.phone).update(
        expires_at=timezone.now() - datetime.timedelta(seconds=1)
    )
    response = enter_code(client, sms.code(member.phone))
    assert "The code is wrong or has expired" in response.content.decode()
    assert not MemberSession.objects.exists()


def test_a_code_works_once(program, member, sms, django_capture_on_commit_callbacks) -> None:  # type: ignore[no-untyped-def]
    ask_code(Client(), program, member.phone, django_capture_on_commit_callbacks)
    code = sms.code(member.phone)
    services.code_verify(program=program, phone=member.phone, code=code, ip=None)
    with pytest.raises(services.CodeInvalid):
        services.code_verify(program=program, phone=member.phone, code=code, ip=None)


def test_a_new_code_replaces_the_previous_one(
    program, member, sms, django_capture_on_commit_callbacks, settings
) -> None:  # type: ignore[no-untyped-def]
    settings.PORTAL_CODE_RESEND_SECONDS = 0
    ask_code(Client(), program, member.phone, django_capture_on_commit_callbacks)
    first = sms.code(member.phone)
    ask_code(Client(), program, member.phone, django_capture_on_commit_callbacks)
    second = sms.code(member.phone)
    if first != second:
        with pytest.raises(services.CodeInvalid):
            services.code_verify(program=program, phone=member.phone, code=first, ip=None)
    assert services.code_verify(program=program, phone=member.phone, code=second, ip=None) == member


def test_too_many_wrong_codes_lock_the_phone_even_for_the_right_code(
    program, member, sms, django_capture_on_commit_callbacks, settings
) -> None:  # type: ignore[no-untyped-def]
    settings.PORTAL_CODE_RESEND_SECONDS = 0
    settings.PORTAL_FAILURES_PER_PHONE_HOUR = 3
    for _ in range(3):
        with pytest.raises(services.CodeInvalid):
            services.code_verify(program=program, phone=member.phone, code="x", ip="10.0.0.9")
    client = Client()
    ask_code(client, program, member.phone, django_capture_on_commit_callbacks)
    response = enter_code(client, sms.code(member.phone))
    assert "Too many wrong codes" in response.content.decode()
    assert "Try again in 60 minutes" in response.content.decode()
    assert not MemberSession.objects.exists()


def test_wrong_codes_from_one_address_lock_it_for_every_phone(program, member, settings) -> None:  # type: ignore[no-untyped-def]
    settings.PORTAL_FAILURES_PER_IP_HOUR = 4
    for _ in range(4):
        with pytest.raises(services.CodeInvalid):
            services.code_verify(program=program, phone=next_phone(), code="1", ip="10.9.9.9")
    with pytest.raises(services.SignInLocked):
        services.code_verify(program=program, phone=member.phone, code="1", ip="10.9.9.9")
    # Another address is not affected.
    with pytest.raises(services.CodeInvalid):
        services.code_verify(program=program, phone=member.phone, code="1", ip="10.9.9.8")


def test_the_api_answers_429_with_retry_after_when_locked(program, member, settings) -> None:  # type: ignore[no-untyped-def]
    settings.PORTAL_FAILURES_PER_PHONE_HOUR = 1
    body = {"phone": member.phone, "code": "123456", "program": program.code}
    client = Client()
    first = client.post(
        "/api/v1/me/sign-in/token", json.dumps(body), content_type="application/json"
    )
    assert first.status_code == 400 and first.json()["code"] == "code_invalid"
    second = client.post(
        "/api/v1/me/sign-in/token", json.dumps(body), content_type="application/json"
    )
    assert second.status_code == 429
    assert second.json()["code"] == "throttled"
    assert int(second["Retry-After"]) > 0


def test_a_second_code_within_a_minute_is_refused(
    program, member, sms, django_capture_on_commit_callbacks
) -> None:  # type: ignore[no-untyped-def]
    client = Client()
    ask_code(client, program, member.phone, django_capture_on_commit_callbacks)
    response = ask_code(client, program, member.phone, django_capture_on_commit_callbacks)
    assert response.status_code == 200
    assert "Too many codes were requested" in response.content.decode()
    assert len(sms.to(member.phone)) == 1


def test_sends_per_phone_and_per_address_are_limited(program, member, sms, settings) -> None:  # type: ignore[no-untyped-def]
    settings.PORTAL_CODE_RESEND_SECONDS = 0
    settings.PORTAL_CODE_SENDS_PER_PHONE_HOUR = 2
    settings.PORTAL_CODE_SENDS_PER_IP_HOUR = 4
    for _ in range(2):
        services.code_request(program=program, phone=member.phone, ip="10.1.1.1")
    with pytest.raises(services.SignInThrottled) as throttled:
        services.code_request(program=program, phone=member.phone, ip="10.1.1.2")
    assert 3500 < throttled.value.retry_after <= 3600
    for _ in range(2):
        services.code_request(program=program, phone=next_phone(), ip="10.1.1.1")
    with pytest.raises(services.SignInThrottled):
        services.code_request(program=program, phone=next_phone(), ip="10.1.1.1")
    # An hour later the phone may ask again.
    later = timezone.now() + datetime.timedelta(hours=1, seconds=1)
    services.code_request(program=program, phone=member.phone, ip="10.1.1.3", now=later)


def test_a_blocked_member_gets_no_code(
    program, member, sms, django_capture_on_commit_callbacks
) -> None:  # type: ignore[no-untyped-def]
    from accounts.services import member_block

    member_block(member=member)
    ask_code(Client(), program, member.phone, django_capture_on_commit_callbacks)
    assert sms.sent == []


def test_sign_in_forms_need_the_csrf_token(program, member) -> None:  # type: ignore[no-untyped-def]
    client = Client(enforce_csrf_checks=True)
    response = client.post(f"/my/sign-in/?program={program.code}", {"phone": member.phone})
    assert response.status_code == 403
    assert not SignInCode.objects.exists()


def test_an_idle_session_ends_and_asks_to_sign_in_again(program, member, settings) -> None:  # type: ignore[no-untyped-def]
    from tests.portal.factories import signed_in_client

    client = signed_in_client(member)
    assert client.get("/my/").status_code == 200
    MemberSession.objects.update(
        last_used_at=timezone.now() - datetime.timedelta(minutes=61),
        created_at=timezone.now() - datetime.timedelta(minutes=61),
    )
    response = client.get("/my/points/")
    assert response.status_code == 302
    assert response["Location"] == "/my/sign-in/?next=%2Fmy%2Fpoints%2F"
    assert MemberSession.objects.get().revoked_at is not None


def test_a_session_ends_at_its_maximum_age_however_busy(program, member) -> None:  # type: ignore[no-untyped-def]
    from tests.portal.factories import signed_in_client

    client = signed_in_client(member)
    MemberSession.objects.update(expires_at=timezone.now() - datetime.timedelta(seconds=1))
    assert client.get("/my/").status_code == 302


def test_signing_out_ends_the_session_on_the_server(program, member) -> None:  # type: ignore[no-untyped-def]
    from portal.web import SESSION_TOKEN
    from tests.portal.factories import signed_in_client

    client = signed_in_client(member)
    token = client.session[SESSION_TOKEN]
    assert client.post("/my/sign-out/").status_code == 302
    with pytest.raises(services.SessionInvalid):
        services.session_member(token=token, kinds=("web",))
    assert client.get("/my/").status_code == 302


def test_the_session_key_changes_at_sign_in(
    program, member, sms, django_capture_on_commit_callbacks
) -> None:  # type: ignore[no-untyped-def]
    client = Client()
    ask_code(client, program, member.phone, django_capture_on_commit_callbacks)
    before = client.session.session_key
    enter_code(client, sms.code(member.phone))
    assert client.session.session_key != before


def test_the_app_signs_in_refreshes_once_and_signs_out(
    program, member, sms, django_capture_on_commit_callbacks
) -> None:  # type: ignore[no-untyped-def]
    client = Client()

    def post(path: str, body: dict, **headers: str):  # type: ignore[no-untyped-def]
        return client.post(path, json.dumps(body), content_type="application/json", **headers)

    with django_capture_on_commit_callbacks(execute=True):
        post("/api/v1/me/sign-in/code", {"phone": member.phone})
    tokens = post(
        "/api/v1/me/sign-in/token", {"phone": member.phone, "code": sms.code(member.phone)}
    ).json()
    assert tokens["token_type"] == "Bearer" and tokens["expires_in"] == 15 * 60
    auth = {"HTTP_AUTHORIZATION": f"Bearer {tokens['access_token']}"}
    me = client.get("/api/v1/me/", **auth)
    assert me.status_code == 200 and me.json()["id"] == str(member.pk)
    assert "no-store" in me["Cache-Control"]

    renewed = post("/api/v1/me/token/refresh", {"refresh_token": tokens["refresh_token"]})
    assert renewed.status_code == 200
    # The old access token ended with the refresh; the new one works.
    assert client.get("/api/v1/me/", **auth).status_code == 401
    new_auth = {"HTTP_AUTHORIZATION": f"Bearer {renewed.json()['access_token']}"}
    assert client.get("/api/v1/me/", **new_auth).status_code == 200
    # A refresh token replayed means it leaked: the whole sign-in ends.
    replay = post("/api/v1/me/token/refresh", {"refresh_token": tokens["refresh_token"]})
    assert replay.status_code == 401 and replay.json()["code"] == "token_invalid"
    assert client.get("/api/v1/me/", **new_auth).status_code == 401


def test_an_access_token_expires_after_fifteen_minutes(program, member) -> None:  # type: ignore[no-untyped-def]
    pair = services.app_session_start(member=member, ip=None)
    later = timezone.now() + datetime.timedelta(minutes=15, seconds=1)
    with pytest.raises(services.SessionInvalid):
        services.session_member(token=pair.access_token, kinds=("access",), now=later)
    # A web session token is not an app token, nor the reverse.
    with pytest.raises(services.SessionInvalid):
        services.session_member(token=pair.refresh_token, kinds=("access",))


def test_api_sign_out_ends_the_tokens(program, member) -> None:  # type: ignore[no-untyped-def]
    pair = services.app_session_start(member=member, ip=None)
    auth = {"HTTP_AUTHORIZATION": f"Bearer {pair.access_token}"}
    client = Client()
    assert client.post("/api/v1/me/sign-out", **auth).status_code == 204
    response = client.get("/api/v1/me/", **auth)
    assert response.status_code == 401
    assert response.json()["code"] == "authentication_failed"
    assert response["WWW-Authenticate"] == "Bearer"


def test_without_a_token_the_api_answers_401_in_the_error_shape(program) -> None:  # type: ignore[no-untyped-def]
    response = Client().get("/api/v1/me/points")
    assert response.status_code == 401
    assert set(response.json()) >= {"code", "detail"}


def test_old_sign_in_records_are_purged_nightly(program, member) -> None:  # type: ignore[no-untyped-def]
    old = timezone.now() - datetime.timedelta(days=8)
    services.code_request(program=program, phone=next_phone(), ip="10.2.2.2", now=old)
    services.code_request(program=program, phone=member.phone, ip="10.2.2.2")
    SignInFailure.objects.create(program=program, phone=member.phone, created_at=old)
    services.web_session_start(member=member, ip=None, now=old)
    fresh = services.web_session_start(member=member, ip=None)
    assert services.sign_in_records_purge() == {"codes": 1, "failures": 1, "sessions": 1}
    assert SignInCode.objects.get().phone == member.phone
    assert services.session_member(token=fresh, kinds=("web",)) == member
