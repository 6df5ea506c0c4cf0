"""Forms of the member pages; they check the shape of input, services decide the rest."""

from __future__ import annotations

from django import forms
from django.utils.translation import gettext_lazy as _

from accounts.models import Consent


class PhoneForm(forms.Form):
    phone = forms.CharField(
        label=_("Phone number"),
        max_length=40,
        widget=forms.TextInput(
            attrs={
                "type": "tel",
                "autocomplete": "tel",
                "inputmode": "tel",
                "placeholder": "+7 912 345-67-89",
                "autofocus": True,
            }
        ),
    )


class CodeForm(forms.Form):
    code = forms.CharField(
        label=_("Code from the SMS"),
        max_length=12,
        widget=forms.TextInput(
            attrs={
                "autocomplete": "one-time-code",
                "inputmode": "numeric",
                "pattern": "[0-9 ]*",
                "autofocus": True,
            }
        ),
    )


class ConsentsForm(forms.Form):
    marketing_sms = forms.BooleanField(label=Consent.Kind.MARKETING_SMS.label, required=False)
    marketing_email = forms.BooleanField(label=Consent.Kind.MARKETING_EMAIL.label, required=False)
    third_party = forms.BooleanField(label=Consent.Kind.THIRD_PARTY.label, required=False)


class DeletionForm(forms.Form):
    confirm = forms.BooleanField(
        label=_("I understand that my points, tier and history will be lost"), required=True
    )
    comment = forms.CharField(
        label=_("Comment (optional)"), required=False, max_length=2000, widget=forms.Textarea
    )
