"""/api/v1/me/: the member's own data for a chain's app, with the member pages' sign-in.

Scope: every read takes the member from the access token, never from the URL or
the body, so another member's ids answer 404 (`not_found`), never their data.
Writes here are naturally idempotent (a consent set to a value, one open deletion
request per member), so unlike the cashier API they need no Idempotency-Key.
"""

from __future__ import annotations

from typing import Any

from django.http import HttpResponse
from django.utils.translation import gettext as _
from drf_spectacular.utils import OpenApiParameter, extend_schema
from rest_framework import status
from rest_framework.request import Request
from rest_framework.response import Response
from rest_framework.views import APIView

from accounts.phones import InvalidPhone
from portal import barcodes, selectors, services
from portal.api import serializers as s
from portal.api.auth import IsMember, MemberRateThrottle, MemberTokenAuthentication
from portal.models import DeletionRequest
from portal.web import client_ip, private, program_for, user_agent
from pos.api.base import StrictJSONParser
from pos.api.serializers import ErrorOut
from pos.errors import ApiError, InvalidInput, NotFound, exception_handler

TAG = "member (me)"
ERRORS = {400: ErrorOut, 401: ErrorOut, 404: ErrorOut, 429: ErrorOut}


class Throttled(ApiError):
    status_code = status.HTTP_429_TOO_MANY_REQUESTS
    code = "throttled"


class CodeInvalidError(ApiError):
    code = "code_invalid"


class TokenInvalid(ApiError):
    status_code = status.HTTP_401_UNAUTHORIZED
    code = "token_invalid"


class ProgramUnknown(NotFound):
    code = "program_not_found"


class MemberApiView(APIView):
    """Signed-in member only; errors in the cashier API's JSON shape; never cached."""

    authentication_classes = [MemberTokenAuthentication]
    permission_classes = [IsMember]
    throttle_classes = [MemberRateThrottle]
    parser_classes = [StrictJSONParser]

    def get_exception_handler(self) -> Any:
        return exception_handler

    def finalize_response(
        self, request: Request, response: HttpResponse, *args: Any, **kwargs: Any
    ) -> HttpResponse:
        response = super().finalize_response(request, response, *args, **kwargs)
        if response.status_code == status.HTTP_401_UNAUTHORIZED:
            response["WWW-Authenticate"] = "Bearer"
        return private(response)

    @property
    def member(self) -> Any:
        return self.request.auth

    def data(self, serializer: type, instance: Any, **kwargs: Any) -> Any:
        return serializer(instance, context={"request": self.request}, **kwargs).data


class SignInView(MemberApiView):
    authentication_classes: list[type] = []
    permission_classes: list[type] = []
    throttle_classes: list[type] = []  # the sign-in services count their own limits

    def validated(self, serializer: type) -> dict[str, Any]:
        found = serializer(data=self.request.data)
        found.is_valid(raise_exception=True)
        return found.validated_data

    def program(self, code: str | None) -> Any:
        program = program_for(code)
        if program is None:
            raise ProgramUnknown(_("Name the program: there is no such one, or several."))
        return program


def _page_url(request: Request, cursor: str | None) -> str | None:
    if not cursor:
        return None
    query = request.query_params.copy()
    query["cursor"] = cursor
    return request.build_absolute_uri(request.path + "?" + query.urlencode())


@extend_schema(tags=[TAG])
class CodeRequestView(SignInView):
    @extend_schema(
        operation_id="me_sign_in_code",
        summary="Send a sign-in code by SMS",
        description=(
            "Answers 202 for every well-formed phone, whether or not it is a member's: "
            "the SMS goes only to members. Limited per phone and per address (429)."
        ),
        request=s.MeCodeRequestIn,
        responses={202: s.MeCodeRequestOut, **ERRORS},
        auth=[],
    )
    def post(self, request: Request) -> Response:
        data = self.validated(s.MeCodeRequestIn)
        program = self.program(data.get("program"))
        try:
            sent = services.code_request(
                program=program,
                phone=data["phone"],
                ip=client_ip(request),
                language=getattr(request, "LANGUAGE_CODE", ""),
            )
        except InvalidPhone as error:
            raise InvalidInput({"phone": [str(error)]}) from None
        except services.SignInThrottled as error:
            raise Throttled(str(error), retry_after=error.retry_after) from None
        body = {
            "detail": _("If this is a member's phone, a code is on its way by SMS."),
            "expires_in": sent.expires_in,
            "resend_after": sent.resend_after,
        }
        return Response(body, status=status.HTTP_202_ACCEPTED)


@extend_schema(tags=[TAG])
class TokenView(SignInView):
    @extend_schema(
        operation_id="me_sign_in_token",
        summary="Exchange the SMS code for tokens",
        request=s.MeTokenIn,
        responses={200: s.MeTokenOut, **ERRORS},
        auth=[],
    )
    def post(self, request: Request) -> Response:
        data = self.validated(s.MeTokenIn)
        program = self.program(data.get("program"))
        try:
            member = services.code_verify(
                program=program, phone=data["phone"], code=data["code"], ip=client_ip(request)
            )
        except services.SignInLocked as error:
            raise Throttled(str(error), retry_after=error.retry_after) from None
        except services.CodeInvalid as error:
            raise CodeInvalidError(str(error)) from None
        pair = services.app_session_start(
            member=member, ip=client_ip(request), user_agent=user_agent(request)
        )
        return Response(self.data(s.MeTokenOut, pair))


@extend_schema(tags=[TAG])
class RefreshView(SignInView):
    @extend_schema(
        operation_id="me_token_refresh",
        summary="Renew the access token",
        description="A refresh token works once; it is replaced by the one in the answer.",
        request=s.MeRefreshIn,
        responses={200: s.MeTokenOut, **ERRORS},
        auth=[],
    )
    def post(self, request: Request) -> Response:
        data = self.validated(s.MeRefreshIn)
        try:
            pair = services.app_session_refresh(
                refresh_token=data["refresh_token"],
                ip=client_ip(request),
                user_agent=user_agent(request),
            )
        except services.SessionInvalid:
            raise TokenInvalid(_("The refresh token is not valid; sign in again.")) from None
        return Response(self.data(s.MeTokenOut, pair))


@extend_schema(tags=[TAG])
class SignOutView(MemberApiView):
    @extend_schema(
        operation_id="me_sign_out",
        summary="Sign out (ends the access and refresh token)",
        request=None,
        responses={204: None, **ERRORS},
    )
    def post(self, request: Request) -> Response:
        token = request.META.get("HTTP_AUTHORIZATION", "").split()[-1]
        services.session_end(token=token)
        return Response(status=status.HTTP_204_NO_CONTENT)


@extend_schema(tags=[TAG])
class MeView(MemberApiView):
    @extend_schema(
        operation_id="me_retrieve",
        summary="The signed-in member",
        responses={200: s.MeOut, **ERRORS},
    )
    def get(self, request: Request) -> Response:
        return Response(selectors.summary(self.member))


@extend_schema(tags=[TAG])
class PointsView(MemberApiView):
    @extend_schema(
        operation_id="me_points",
        summary="Balance, what expires when, pending points",
        responses={200: s.MePointsOut, **ERRORS},
    )
    def get(self, request: Request) -> Response:
        member = self.member
        expiring = selectors.expiry_schedule(member)
        body = {
            "balance": selectors.balance(member).as_dict(),
            "next_expiry": expiring[0] if expiring else None,
            "expiring": expiring,
            "pending": selectors.pending_schedule(member),
        }
        return Response(self.data(s.MePointsOut, body))


@extend_schema(tags=[TAG])
class TierView(MemberApiView):
    @extend_schema(
        operation_id="me_tier",
        summary="Tier, spend to the next one, what keeps the current one",
        responses={200: s.MeTierProgressOut, **ERRORS},
    )
    def get(self, request: Request) -> Response:
        return Response(self.data(s.MeTierProgressOut, selectors.tier_progress(self.member)))


CURSOR = OpenApiParameter("cursor", str, description="`next` of the previous page carries it.")


@extend_schema(tags=[TAG])
class TransactionsView(MemberApiView):
    @extend_schema(
        operation_id="me_transactions_list",
        summary="Points history, newest first",
        parameters=[CURSOR],
        responses={200: s.MeHistoryPageOut, **ERRORS},
    )
    def get(self, request: Request) -> Response:
        page = selectors.history_page(self.member, cursor=request.query_params.get("cursor"))
        body = {"results": page.items, "next": _page_url(request, page.next_cursor)}
        return Response(self.data(s.MeHistoryPageOut, body))


@extend_schema(tags=[TAG])
class PurchasesView(MemberApiView):
    @extend_schema(
        operation_id="me_purchases_list",
        summary="Purchases with points earned and spent, and refunds",
        parameters=[CURSOR],
        responses={200: s.MePurchasePageOut, **ERRORS},
    )
    def get(self, request: Request) -> Response:
        page = selectors.purchases_page(self.member, cursor=request.query_params.get("cursor"))
        body = {"results": page.items, "next": _page_url(request, page.next_cursor)}
        return Response(self.data(s.MePurchasePageOut, body))


@extend_schema(tags=[TAG])
class PurchaseView(MemberApiView):
    @extend_schema(
        operation_id="me_purchase_retrieve",
        summary="One purchase with its lines and refunds",
        responses={200: s.MePurchaseDetailOut, **ERRORS},
    )
    def get(self, request: Request, purchase_id: str) -> Response:
        purchase = selectors.purchase_of(self.member, purchase_id)
        if purchase is None:
            raise NotFound(_("No such purchase."))
        return Response(self.data(s.MePurchaseDetailOut, purchase))


@extend_schema(tags=[TAG])
class OffersView(MemberApiView):
    @extend_schema(
        operation_id="me_offers",
        summary="Offers for the member and their promo codes",
        responses={200: s.MeOffersOut, **ERRORS},
    )
    def get(self, request: Request) -> Response:
        codes = selectors.promo_codes(self.member)
        body = {"offers": selectors.offers(self.member, codes=codes), "promo_codes": codes}
        return Response(self.data(s.MeOffersOut, body))


@extend_schema(tags=[TAG])
class CardView(MemberApiView):
    @extend_schema(
        operation_id="me_card",
        summary="The digital card: number, barcode and QR code (SVG), referral code",
        responses={200: s.MeCardOut, **ERRORS},
    )
    def get(self, request: Request) -> Response:
        number = selectors.card_number(self.member)
        body = {
            "number": number,
            "symbology": barcodes.barcode_for(number).symbology if number else None,
            "barcode_svg": barcodes.barcode_svg(number) if number else None,
            "qr_svg": barcodes.qr_svg(number) if number else None,
            "referral_code": selectors.referral_code(self.member),
        }
        return Response(self.data(s.MeCardOut, body))


@extend_schema(tags=[TAG])
class ConsentsView(MemberApiView):
    @extend_schema(
        operation_id="me_consents_retrieve",
        summary="Consents",
        responses={200: s.MeConsentsOut, **ERRORS},
    )
    def get(self, request: Request) -> Response:
        return Response(self.data(s.MeConsentsOut, selectors.consents(self.member)))

    @extend_schema(
        operation_id="me_consents_update",
        summary="Give or withdraw consents (in force at once)",
        description="Withdrawing consent to personal data processing is a deletion request.",
        request=s.MeConsentsIn,
        responses={200: s.MeConsentsOut, **ERRORS},
    )
    def patch(self, request: Request) -> Response:
        found = s.MeConsentsIn(data=request.data)
        found.is_valid(raise_exception=True)
        services.consents_change(member=self.member, wanted=dict(found.validated_data))
        return Response(self.data(s.MeConsentsOut, selectors.consents(self.member)))


@extend_schema(tags=[TAG])
class DeletionRequestView(MemberApiView):
    @extend_schema(
        operation_id="me_deletion_request_retrieve",
        summary="The open request to delete the member's data",
        responses={200: s.MeDeletionOut, **ERRORS},
    )
    def get(self, request: Request) -> Response:
        found = DeletionRequest.objects.filter(
            member=self.member, status=DeletionRequest.Status.OPEN
        ).first()
        if found is None:
            raise NotFound(_("There is no open deletion request."))
        return Response(self.data(s.MeDeletionOut, found))

    @extend_schema(
        operation_id="me_deletion_request_create",
        summary="Ask support to delete the member's data",
        request=s.MeDeletionIn,
        responses={201: s.MeDeletionOut, 200: s.MeDeletionOut, **ERRORS},
    )
    def post(self, request: Request) -> Response:
        found = s.MeDeletionIn(data=request.data or {})
        found.is_valid(raise_exception=True)
        item, created = services.deletion_request_create(
            member=self.member, comment=found.validated_data.get("comment", "")
        )
        code = status.HTTP_201_CREATED if created else status.HTTP_200_OK
        return Response(self.data(s.MeDeletionOut, item), status=code)
