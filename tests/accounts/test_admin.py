from __future__ import annotations

import pytest
from django.contrib.auth import get_user_model
from django.test import Client
from django.urls import reverse

from accounts.admin import MEMBER_PANELS, member_panel_register
from accounts.models import Card, Consent, Member
from accounts.selectors import card_active, consents_current
from accounts.services import consent_record, member_block

from .factories import ProgramFactory, StoreFactory, TierFactory, member_create
from .forms import form_data

pytestmark = pytest.mark.django_db

CHANGELIST = "admin:accounts_member_changelist"


@pytest.fixture
def staff() -> Client:
    user = get_user_model().objects.create_superuser("boss", "boss@example.com", "pw-Long-enough-1")
    client = Client()
    client.force_login(user)
    return client


def _change_url(member: Member) -> str:
    return reverse("admin:accounts_member_change", args=[member.pk])


def _found(client: Client, query: str) -> list[Member]:
    response = client.get(reverse(CHANGELIST), {"q": query})
    assert response.status_code == 200
    return list(response.context["cl"].result_list)


def test_the_member_list_renders_with_one_query_set_whatever_the_number_of_rows(
    staff: Client, django_assert_max_num_queries
) -> None:
    program = ProgramFactory()
    tiers = [
        TierFactory(program=program, code="base", threshold=0),
        TierFactory(program=program, code="gold", threshold=50000),
    ]
    store = StoreFactory(program=program)
    for i in range(30):
        member = member_create(program, store=store if i % 2 else None)
        member.tier = tiers[i % 2]
        member.save(update_fields=["tier"])

    with django_assert_max_num_queries(10):  # 7 today: session, user, filters, page, counts
        response = staff.get(reverse(CHANGELIST))

    assert response.status_code == 200
    assert len(response.context["cl"].result_list) == 30
    assert card_active(member).number in response.content.decode()


def test_a_member_is_found_by_phone_in_any_local_form(staff: Client) -> None:
    member = member_create(phone="+79123456789")
    member_create()

    for query in ("8 (912) 345-67-89", "+7 912 345 67 89", "9123456789", "79123456789", "6789"):
        assert _found(staff, query) == [member], query


def test_a_member_is_found_by_card_number_name_or_email(staff: Client) -> None:
    member = member_create(first_name="Svetlana", last_name="Orlova", email="s.orlova@example.com")
    member_create(first_name="Boris", last_name="Kim", email="kim@example.com")
    number = card_active(member).number

    assert _found(staff, number) == [member]
    assert _found(staff, "Orlova") == [member]
    assert _found(staff, "svetlana orlova") == [member]
    assert _found(staff, "s.orlova@example") == [member]
    assert _found(staff, "nobody-like-this") == []


def test_the_list_filters_by_status_and_current_marketing_consent(staff: Client) -> None:
    program = ProgramFactory()
    sms = member_create(program, consents={"personal_data": True, "marketing_sms": True})
    withdrew = member_create(program, consents={"personal_data": True, "marketing_sms": True})
    consent_record(member=withdrew, kind="marketing_sms", granted=False, channel="web")
    never = member_create(program, consents={"personal_data": True})
    member_block(member=never)

    def filtered(**params: str) -> set[Member]:
        response = staff.get(reverse(CHANGELIST), params)
        assert response.status_code == 200
        return set(response.context["cl"].result_list)

    assert filtered(consent="sms_given") == {sms}
    assert filtered(consent="sms_not") == {withdrew, never}
    assert filtered(status__exact="blocked") == {never}
    assert filtered(store__id__exact=str(StoreFactory(program=program).pk)) == set()


def test_the_member_page_shows_cards_consent_history_and_room_for_points(
    staff: Client, monkeypatch
) -> None:  # type: ignore[no-untyped-def]
    monkeypatch.setattr("accounts.admin.MEMBER_PANELS", [])  # as before later apps add theirs
    member = member_create(consents={"personal_data": True, "marketing_email": True})

    response = staff.get(_change_url(member))

    page = response.content.decode()
    assert response.status_code == 200
    assert card_active(member).number in page
    assert "advertising by e-mail" in page
    assert "The points balance and purchases will be shown here." in page
    assert "Replace card" in page and "Anonymise" in page


def test_later_apps_can_show_their_section_on_the_member_page(staff: Client) -> None:
    member = member_create()

    def balance(member: Member) -> str:
        return "Balance: 340 points <script>"

    member_panel_register(balance)
    try:
        page = staff.get(_change_url(member)).content.decode()
    finally:
        MEMBER_PANELS.remove(balance)
    assert "Balance: 340 points &lt;script&gt;" in page


def test_support_enrols_a_member_from_the_admin(staff: Client) -> None:
    program = ProgramFactory()
    store = StoreFactory(program=program)
    add_url = reverse("admin:accounts_member_add")
    data = {
        **{
            k: v[0]
            for k, v in form_data(staff.get(add_url).content.decode(), "member_form").items()
        },
        "program": str(program.pk),
        "phone": "8 916 111-22-33",
        "first_name": "Olga",
        "store": str(store.pk),
        "consent_personal_data": "on",
        "consent_marketing_email": "on",
    }

    response = staff.post(add_url, data)

    assert response.status_code == 302, response.context["adminform"].form.errors
    member = Member.objects.get(phone="+79161112233")
    assert (member.first_name, member.channel, member.store) == ("Olga", "admin", store)
    assert consents_current(member)["marketing_email"] is True
    assert card_active(member) is not None


def test_enrolling_a_taken_phone_points_to_the_member_who_has_it(staff: Client) -> None:
    program = ProgramFactory()
    existing = member_create(program, phone="+79161112233")
    add_url = reverse("admin:accounts_member_add")
    data = {
        **{
            k: v[0]
            for k, v in form_data(staff.get(add_url).content.decode(), "member_form").items()
        },
        "program": str(program.pk),
        "phone": "89161112233",
        "consent_personal_data": "on",
    }

    response = staff.post(add_url, data)

    assert response.status_code == 200
    assert _change_url(existing) in response.content.decode()
    assert Member.objects.filter(program=program).count() == 1


def _submit_change(client: Client, member: Member, **changes: str) -> object:
    url = _change_url(member)
    data = form_data(client.get(url).content.decode(), "member_form")
    data.update({k: [v] for k, v in changes.items()})
    return client.post(url, data)


def test_editing_a_member_goes_through_the_service_and_normalises_the_phone(staff: Client) -> None:
    member = member_create(last_name="Ivanova")

    response = _submit_change(staff, member, last_name="Smirnova", phone="8 (926) 000-11-22")

    assert response.status_code == 302
    member.refresh_from_db()
    assert (member.last_name, member.phone) == ("Smirnova", "+79260001122")


def test_a_phone_of_another_member_is_refused_on_the_form(staff: Client) -> None:
    program = ProgramFactory()
    other = member_create(program)
    member = member_create(program)

    response = _submit_change(staff, member, phone=other.phone)

    assert response.status_code == 200
    assert "already belongs to a member" in response.content.decode()
    member.refresh_from_db()
    assert member.phone != other.phone


def test_a_birth_date_in_the_future_or_before_1900_is_refused_on_the_form(staff: Client) -> None:
    member = member_create()
    for typo in ("2096-05-01", "1896-05-01"):
        response = _submit_change(staff, member, birth_date=typo)
        assert response.status_code == 200
        assert f"The birth date {typo} is not possible." in response.content.decode()
    assert _submit_change(staff, member, birth_date="1996-05-01").status_code == 302
    member.refresh_from_db()
    assert str(member.birth_date) == "1996-05-01"


def test_support_adds_a_consent_entry_and_the_history_keeps_the_old_one(staff: Client) -> None:
    member = member_create(consents={"personal_data": True, "marketing_sms": True})
    before = Consent.objects.filter(member=member).count()

    response = _submit_change(
        staff,
        member,
        **{
            "consents-TOTAL_FORMS": str(before + 1),
            f"consents-{before}-kind": "marketing_sms",
            f"consents-{before}-text_version": "v2",
        },
    )

    assert response.status_code == 302
    assert Consent.objects.filter(member=member).count() == before + 1
    latest = Consent.objects.filter(member=member).order_by("-id").first()
    assert (latest.kind, latest.granted, latest.channel, latest.text_version) == (
        "marketing_sms",
        False,
        "admin",
        "v2",
    )
    assert consents_current(member)["marketing_sms"] is False


def test_block_and_unblock_actions_change_the_status(staff: Client) -> None:
    members = [member_create(), member_create()]
    ids = [str(m.pk) for m in members]

    staff.post(reverse(CHANGELIST), {"action": "block_selected", "_selected_action": ids})
    assert set(Member.objects.filter(pk__in=ids).values_list("status", flat=True)) == {"blocked"}

    staff.post(reverse(CHANGELIST), {"action": "unblock_selected", "_selected_action": ids})
    assert set(Member.objects.filter(pk__in=ids).values_list("status", flat=True)) == {"active"}


def test_the_block_button_on_the_member_page_blocks_and_unblocks(staff: Client) -> None:
    member = member_create()
    url = reverse("admin:accounts_member_block", args=[member.pk])

    assert staff.post(url).status_code == 302
    assert Member.objects.get(pk=member.pk).status == "blocked"
    assert staff.post(url, {"unblock": "1"}).status_code == 302
    assert Member.objects.get(pk=member.pk).status == "active"
    assert staff.get(url).status_code == 403  # a change needs a POST


def test_replacing_a_card_from_the_member_page(staff: Client) -> None:
    member = member_create()
    old = card_active(member)
    url = reverse("admin:accounts_member_replace_card", args=[member.pk])

    assert old.number in staff.get(url).content.decode()
    response = staff.post(url, {"number": ""})

    assert response.status_code == 302
    old.refresh_from_db()
    new = card_active(member)
    assert old.status == "blocked" and old.replaced_by == new


def test_a_mistyped_pre_printed_card_is_refused_on_the_replace_page(staff: Client) -> None:
    member = member_create()
    old = card_active(member)

    response = staff.post(
        reverse("admin:accounts_member_replace_card", args=[member.pk]), {"number": "2000000000016"}
    )

    assert response.status_code == 200
    assert "check the digits" in response.content.decode()
    assert card_active(member) == old


def test_the_replace_card_action_opens_the_page_for_one_member(staff: Client) -> None:
    member = member_create()
    response = staff.post(
        reverse(CHANGELIST),
        {"action": "replace_card_selected", "_selected_action": [str(member.pk)]},
    )
    assert response.status_code == 302
    assert response["Location"] == reverse("admin:accounts_member_replace_card", args=[member.pk])


def test_anonymising_asks_for_confirmation_first(staff: Client) -> None:
    member = member_create(last_name="Volkova")
    url = reverse("admin:accounts_member_anonymise", args=[member.pk])

    page = staff.get(url)
    assert page.status_code == 200 and "cannot be undone" in page.content.decode()
    assert Member.objects.get(pk=member.pk).last_name == "Volkova"

    staff.post(url, {})  # a POST without the confirmation changes nothing
    assert Member.objects.get(pk=member.pk).status == "active"

    response = staff.post(url, {"confirmed": "yes"})
    assert response.status_code == 302
    member.refresh_from_db()
    assert member.status == "anonymised" and member.last_name == ""


def test_the_anonymise_action_confirms_then_anonymises_the_selection(staff: Client) -> None:
    members = [member_create(last_name="Frolova"), member_create(last_name="Gromova")]
    ids = [str(m.pk) for m in members]
    data = {"action": "anonymise_selected", "_selected_action": ids}

    confirm = staff.post(reverse(CHANGELIST), data)
    assert confirm.status_code == 200 and "Frolova" in confirm.content.decode()
    assert not Member.objects.filter(status="anonymised").exists()

    staff.post(reverse(CHANGELIST), {**data, "confirmed": "yes"})
    assert Member.objects.filter(pk__in=ids, status="anonymised").count() == 2


def test_an_anonymised_member_page_is_read_only_and_offers_no_actions(staff: Client) -> None:
    member = member_create()
    staff.post(reverse("admin:accounts_member_anonymise", args=[member.pk]), {"confirmed": "yes"})

    page = staff.get(_change_url(member)).content.decode()

    assert 'name="first_name"' not in page
    assert "Replace card" not in page


def test_members_cannot_be_deleted_only_anonymised(staff: Client) -> None:
    member = member_create()
    assert staff.get(reverse("admin:accounts_member_delete", args=[member.pk])).status_code == 403
    assert Member.objects.filter(pk=member.pk).exists()


def test_the_card_list_finds_whose_card_it_is(staff: Client) -> None:
    member = member_create(last_name="Belova")
    number = card_active(member).number

    response = staff.get(reverse("admin:accounts_card_changelist"), {"q": number})

    assert list(response.context["cl"].result_list) == [Card.objects.get(number=number)]
