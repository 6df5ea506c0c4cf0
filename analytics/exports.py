"""Tables to CSV and XLSX. Text that a spreadsheet would run as a formula is escaped."""

from __future__ import annotations

import csv
import io
from decimal import Decimal
from typing import Any

from django.http import HttpResponse
from django.utils.encoding import force_str
from openpyxl import Workbook

FORMULA_STARTS = ("=", "+", "-", "@", "\t", "\r")


def cell(value: Any) -> Any:
    """Numbers stay numbers; text starting like a formula gets a leading apostrophe."""
    if value is None:
        return ""
    if isinstance(value, bool):
        return int(value)
    if isinstance(value, int | float | Decimal):
        return value
    text = force_str(value)
    return "'" + text if text.startswith(FORMULA_STARTS) else text


def table_response(
    columns: list[Any], rows: list[list[Any]], *, name: str, fmt: str
) -> HttpResponse:
    header = [cell(c) for c in columns]
    body = [[cell(v) for v in row] for row in rows]
    if fmt == "xlsx":
        book = Workbook()
        sheet = book.active
        sheet.title = name[:31]
        sheet.append(header)
        for row in body:
            # openpyxl writes a str beginning with "=" as a formula; escaped text cannot.
            sheet.append([float(v) if isinstance(v, Decimal) else v for v in row])
        buffer = io.BytesIO()
        book.save(buffer)
        response = HttpResponse(
            buffer.getvalue(),
            content_type="application/vnd.openxmlformats-officedocument.spreadsheetml.sheet",
        )
    else:
        text = io.StringIO()
        writer = csv.writer(text)
        writer.writerow(header)
        writer.writerows(body)
        # A BOM so that Excel opens the Cyrillic text as UTF-8.
        response = HttpResponse("\ufeff" + text.getvalue(), content_type="text/csv; charset=utf-8")
    response["Content-Disposition"] = f'attachment; filename="{name}.{fmt}"'
    return response
