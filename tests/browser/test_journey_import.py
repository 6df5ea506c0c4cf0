"""An administrator imports a Windows-1251 member file through the admin: preview, then confirm."""

from __future__ import annotations

from pathlib import Path

import pytest
from playwright.sync_api import Page, expect

from accounts.models import Card, Consent, Member
from tests.browser.conftest import ARTIFACTS
from tests.pos.factories import StoreFactory, program_create, tiers_create

pytestmark = pytest.mark.django_db(transaction=True)

FILE = Path(__file__).resolve().parents[1] / "data" / "members_cp1251_semicolon.csv"


def test_an_administrator_imports_a_cp1251_file_after_checking_its_preview(
    page: Page, live_server, staff_login
) -> None:  # type: ignore[no-untyped-def]
    assert FILE.read_bytes().decode("cp1251").startswith("Телефон;")  # the file is what we say
    program = program_create(code="main")
    tiers_create(program)
    StoreFactory(program=program, code="S1", name="Central")
    staff_login("administrators")

    page.locator("tr.model-member th a").first.click()
    page.get_by_role("link", name="Import", exact=True).click()
    expect(page.locator("#id_program")).to_have_value(str(program.pk))  # the only program
    page.set_input_files("#id_import_file", str(FILE))
    page.locator("#id_format").select_option(label="csv")
    page.get_by_role("button", name="Submit").click()

    # The preview: what would happen to each row, and nothing written yet.
    preview = page.locator("#member-import-preview")
    expect(preview).to_be_visible()
    expect(page.locator("#content")).to_contain_text("To create: 3")
    expect(page.locator("#content")).to_contain_text("Refused: 1")
    expect(preview.locator("tr.refused")).to_have_count(1)
    expect(preview.locator("tr.create")).to_have_count(3)
    expect(preview.locator("tr.refused")).to_contain_text("ivan@example is not an e-mail address")
    assert not Member.objects.filter(program=program).exists()
    page.screenshot(path=str(ARTIFACTS / "member_import_preview.png"), full_page=True)

    page.get_by_role("button", name="Confirm import").click()
    expect(page.locator("ul.messagelist")).to_contain_text(
        "Import finished: 3 members created, 0 updated, 0 unchanged, 1 rows refused."
    )
    expect(page.locator("ul.messagelist")).to_contain_text("Download the refused rows")
    results = page.locator("#result_list tbody")
    for name, phone in [
        ("Иванова Анна", "+79123456789"),
        ("Смирнов Пётр", "+79121112233"),
        ("Кузнецова Ольга", "+79123334455"),
    ]:
        expect(results.locator("tr").filter(has_text=phone)).to_contain_text(name)

    members = {m.phone: m for m in Member.objects.filter(program=program)}
    assert set(members) == {"+79123456789", "+79121112233", "+79123334455"}
    anna = members["+79123456789"]
    assert (anna.first_name, anna.last_name, anna.email) == ("Анна", "Иванова", "anna@example.ru")
    assert anna.birth_date.isoformat() == "1985-03-12" and anna.store.code == "S1"
    petr = members["+79121112233"]
    assert Card.objects.get(member=petr, status=Card.Status.ACTIVE).number == "2000000000015"
    assert Consent.objects.filter(member=anna, kind="marketing_sms", granted=True).exists()
    assert not Member.objects.filter(phone="+79124445566").exists()  # the refused row
