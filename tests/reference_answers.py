"""Convoso's answers as its API reference prints them, for tests that decode the real thing."""

#: The API reference's search example (``POST /campaigns/search``), verbatim.
REFERENCE_SEARCH_ANSWER = """{
"data": [
{
"id": "111",
"name": "Sales Campaign",
"status": "Y",
"last_call_date": {
"date": "2026-03-03",
"timezone_type": 3,
"timezone": "America/Denver"
}
},
{
"id": "222",
"name": "Customer Service",
"status": "N",
"last_call_date": {
"date": "2026-03-02",
"timezone_type": 3,
"timezone": "America/Denver"
}
},
{
"id": "333",
"name": "Retention Campaign",
"status": "Y",
"last_call_date": {
"date": "2026-03-03",
"timezone_type": 3,
"timezone": "America/Denver"
}
}
]
}"""
