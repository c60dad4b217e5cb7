"""The demo corpus's databases: schema and seeded data for each, written into SQLite.

Each builder takes an open connection and a seeded :class:`random.Random` and fills the database
the way Spider's look: ISO text dates (``DATE`` / ``DATETIME`` declared, stored as text), REAL
money, NULLs where a value is unknown, and three columns that mix types the way Spider's do
(``flights.gate`` is declared INTEGER but some gates are text like ``'B7'``;
``employees.phone_ext`` is declared INTEGER but a few extensions are text like ``'x204'``;
``patients.weight`` is declared REAL but some weights are the empty string).

Everything is a function of the seed and the insertion order, so the same code writes the same
bytes every time.
"""

from __future__ import annotations

import datetime as dt
import random
import sqlite3
from typing import Callable

FIRST_NAMES = (
    "Alice", "Bruno", "Chen", "Dalia", "Elena", "Farid", "Grace", "Hiro", "Ines", "Jonas",
    "Kofi", "Lena", "Mateo", "Nadia", "Oscar", "Priya", "Quinn", "Rosa", "Samir", "Tara",
    "Umar", "Vera", "Wei", "Ximena", "Yusuf", "Zoe", "Amara", "Bjorn", "Carmen", "Dmitri",
    "Esther", "Felix", "Gita", "Hugo", "Ivy", "Jamal", "Keiko", "Liam", "Maya", "Noah",
)
FEMALE_NAMES = frozenset((
    "Alice", "Dalia", "Elena", "Grace", "Ines", "Lena", "Nadia", "Priya", "Rosa", "Tara", "Vera",
    "Ximena", "Zoe", "Amara", "Carmen", "Esther", "Gita", "Ivy", "Keiko", "Maya",
))
LAST_NAMES = (
    "Smith", "Garcia", "Nguyen", "Okafor", "Muller", "Rossi", "Kowalski", "Tanaka", "Silva",
    "Dubois", "Haddad", "Johansson", "Patel", "Kim", "Novak", "Oliveira", "Brown", "Ivanova",
    "Costa", "Fischer", "Moreau", "Khan", "Lopez", "Walsh", "Sato", "Berg", "Adeyemi", "Horvat",
)
CITIES = (
    ("Lisbon", "Portugal"), ("Porto", "Portugal"), ("Madrid", "Spain"), ("Seville", "Spain"),
    ("Lyon", "France"), ("Paris", "France"), ("Berlin", "Germany"), ("Munich", "Germany"),
    ("Rome", "Italy"), ("Milan", "Italy"), ("Dublin", "Ireland"), ("Oslo", "Norway"),
    ("Toronto", "Canada"), ("Chicago", "USA"), ("Austin", "USA"), ("Boston", "USA"),
)


def _day(rng: random.Random, start: dt.date, span_days: int) -> dt.date:
    return start + dt.timedelta(days=rng.randrange(span_days))


def _person(rng: random.Random) -> tuple[str, str]:
    return rng.choice(FIRST_NAMES), rng.choice(LAST_NAMES)


def _gender(first_name: str) -> str:
    return "F" if first_name in FEMALE_NAMES else "M"


def _unique_people(rng: random.Random, count: int) -> list[tuple[str, str]]:
    seen: set[tuple[str, str]] = set()
    people = []
    while len(people) < count:
        person = _person(rng)
        if person not in seen:
            seen.add(person)
            people.append(person)
    return people


def hash_code(text: str) -> int:
    """A stable small hash (Python's ``hash`` of a string changes between runs)."""
    value = 0
    for ch in text:
        value = (value * 131 + ord(ch)) % 1_000_003
    return value


def _insert(conn: sqlite3.Connection, table: str, rows: list[tuple]) -> None:
    if rows:
        marks = ", ".join("?" * len(rows[0]))
        conn.executemany(f"INSERT INTO {table} VALUES ({marks})", rows)


# --- library -------------------------------------------------------------------------------------

_GENRES = ("Fiction", "Mystery", "Science", "History", "Poetry", "Fantasy", "Biography")
_TITLE_WORDS = ("Silent", "River", "Glass", "Garden", "Winter", "Atlas", "Hidden", "Paper", "Storm",
                "Orchard", "Signal", "Harbor", "Copper", "Lantern", "Quiet", "Northern", "Salt", "Echo")


def build_library(conn: sqlite3.Connection, rng: random.Random) -> None:
    conn.executescript("""
        CREATE TABLE authors (
            author_id INTEGER PRIMARY KEY, name TEXT NOT NULL, country TEXT, birth_year INTEGER);
        CREATE TABLE books (
            book_id INTEGER PRIMARY KEY, title TEXT NOT NULL,
            author_id INTEGER REFERENCES authors(author_id), genre TEXT, published_year INTEGER,
            pages INTEGER, price REAL);
        CREATE TABLE members (
            member_id INTEGER PRIMARY KEY, name TEXT NOT NULL, email TEXT, city TEXT,
            joined_on DATE, birth_date DATE);
        CREATE TABLE loans (
            loan_id INTEGER PRIMARY KEY, book_id INTEGER REFERENCES books(book_id),
            member_id INTEGER REFERENCES members(member_id), loan_date DATE, due_date DATE,
            return_date DATE, fine REAL);
    """)
    authors = []
    for author_id, (first, last) in enumerate(_unique_people(rng, 30), 1):
        city, country = rng.choice(CITIES)
        authors.append((author_id, f"{first} {last}", country if rng.random() > 0.1 else None,
                        rng.randrange(1920, 1995)))
    _insert(conn, "authors", authors)

    books, titles = [], set()
    while len(books) < 120:
        title = f"The {rng.choice(_TITLE_WORDS)} {rng.choice(_TITLE_WORDS)}"
        if title in titles or title.split()[1] == title.split()[2]:
            continue
        titles.add(title)
        author = rng.choice(authors)
        year = rng.randrange(max(author[3] + 20, 1950), 2024)
        pages = rng.randrange(90, 900)
        price = round(rng.uniform(6, 45), 2) if rng.random() > 0.05 else None
        books.append((len(books) + 1, title, author[0], rng.choice(_GENRES), year, pages, price))
    _insert(conn, "books", books)

    members = []
    for member_id, (first, last) in enumerate(_unique_people(rng, 60), 1):
        city, _ = rng.choice(CITIES[:8])
        joined = _day(rng, dt.date(2015, 1, 1), 3000)
        birth = _day(rng, dt.date(1950, 1, 1), 20000).isoformat() if rng.random() > 0.15 else None
        email = f"{first.lower()}.{last.lower()}@example.org" if rng.random() > 0.1 else None
        members.append((member_id, f"{first} {last}", email, city, joined.isoformat(), birth))
    _insert(conn, "members", members)

    loans = []
    for loan_id in range(1, 351):
        member = rng.choice(members)
        start = max(dt.date.fromisoformat(member[4]), dt.date(2022, 1, 1))
        loan_date = _day(rng, start, 700)
        due = loan_date + dt.timedelta(days=21)
        returned = loan_date + dt.timedelta(days=rng.randrange(2, 40)) if rng.random() > 0.12 else None
        late_days = (returned - due).days if returned else 0
        fine = round(late_days * 0.25, 2) if late_days > 0 else None
        loans.append((loan_id, rng.choice(books)[0], member[0], loan_date.isoformat(), due.isoformat(),
                      returned.isoformat() if returned else None, fine))
    _insert(conn, "loans", loans)


# --- retail --------------------------------------------------------------------------------------

_PRODUCTS = (
    ("Espresso Beans", "Coffee", 14.5), ("Decaf Beans", "Coffee", 13.0), ("Cold Brew Kit", "Coffee", 32.0),
    ("French Press", "Equipment", 28.9), ("Pour Over Cone", "Equipment", 18.0), ("Burr Grinder", "Equipment", 89.0),
    ("Milk Frother", "Equipment", 24.5), ("Green Tea", "Tea", 9.5), ("Earl Grey", "Tea", 8.75),
    ("Chamomile", "Tea", 7.25), ("Matcha Powder", "Tea", 21.0), ("Ceramic Mug", "Accessories", 12.0),
    ("Travel Tumbler", "Accessories", 22.0), ("Paper Filters", "Accessories", 4.5), ("Gift Card", "Gifts", 25.0),
    ("Tasting Box", "Gifts", 39.0), ("Almond Biscotti", "Snacks", 6.0), ("Dark Chocolate", "Snacks", 5.5),
)
_STATUSES = ("delivered", "delivered", "delivered", "shipped", "pending", "cancelled")


def build_retail(conn: sqlite3.Connection, rng: random.Random) -> None:
    conn.executescript("""
        CREATE TABLE customers (
            customer_id INTEGER PRIMARY KEY, first_name TEXT, last_name TEXT, email TEXT,
            city TEXT, country TEXT, signup_date DATE);
        CREATE TABLE products (
            product_id INTEGER PRIMARY KEY, name TEXT, category TEXT, unit_price REAL,
            stock INTEGER, discontinued BOOLEAN);
        CREATE TABLE orders (
            order_id INTEGER PRIMARY KEY, customer_id INTEGER REFERENCES customers(customer_id),
            order_date DATETIME, status TEXT, shipping_cost REAL);
        CREATE TABLE order_items (
            order_id INTEGER REFERENCES orders(order_id),
            product_id INTEGER REFERENCES products(product_id), quantity INTEGER,
            unit_price REAL, discount REAL, PRIMARY KEY (order_id, product_id));
    """)
    customers = []
    for customer_id, (first, last) in enumerate(_unique_people(rng, 70), 1):
        city, country = rng.choice(CITIES)
        email = f"{first[0].lower()}{last.lower()}{customer_id}@mail.example" if rng.random() > 0.08 else None
        customers.append((customer_id, first, last, email, city, country,
                          _day(rng, dt.date(2019, 1, 1), 1800).isoformat()))
    _insert(conn, "customers", customers)

    products = []
    for product_id, (name, category, price) in enumerate(_PRODUCTS, 1):
        products.append((product_id, name, category, price, rng.randrange(0, 250), int(rng.random() < 0.15)))
    _insert(conn, "products", products)

    orders, items = [], []
    for order_id in range(1, 301):
        customer = rng.choice(customers)
        day = max(dt.date.fromisoformat(customer[6]), dt.date(2022, 1, 1))
        when = dt.datetime.combine(_day(rng, day, 900), dt.time(rng.randrange(7, 23), rng.randrange(60), rng.randrange(60)))
        shipping = rng.choice((0.0, 4.99, 4.99, 7.5, 12.0)) if rng.random() > 0.1 else None
        orders.append((order_id, customer[0], when.strftime("%Y-%m-%d %H:%M:%S"), rng.choice(_STATUSES), shipping))
        for product in rng.sample(products, rng.randrange(1, 5)):
            discount = rng.choice((0.0, 0.0, 0.0, 0.05, 0.1, 0.2))
            items.append((order_id, product[0], rng.randrange(1, 6), product[3], discount))
    _insert(conn, "orders", orders)
    _insert(conn, "order_items", items)


# --- school --------------------------------------------------------------------------------------

_DEPARTMENTS = (("Mathematics", "Euler Hall", 420000.0), ("Physics", "Curie Hall", 515000.0),
                ("History", "Gibbon Hall", 210000.0), ("Biology", "Darwin Hall", 480000.0),
                ("Literature", "Austen Hall", 190000.0), ("Computer Science", "Turing Hall", 640000.0))
_COURSE_TOPICS = {
    "Mathematics": ("Calculus I", "Linear Algebra", "Probability", "Number Theory"),
    "Physics": ("Mechanics", "Electromagnetism", "Quantum Physics"),
    "History": ("Ancient Rome", "Modern Europe", "History of Science"),
    "Biology": ("Genetics", "Ecology", "Cell Biology"),
    "Literature": ("Poetry Workshop", "The Novel"),
    "Computer Science": ("Databases", "Algorithms", "Operating Systems", "Machine Learning"),
}
_SEMESTERS = ("2022-fall", "2023-spring", "2023-fall", "2024-spring")


def build_school(conn: sqlite3.Connection, rng: random.Random) -> None:
    conn.executescript("""
        CREATE TABLE departments (
            dept_id INTEGER PRIMARY KEY, name TEXT, building TEXT, budget REAL);
        CREATE TABLE teachers (
            teacher_id INTEGER PRIMARY KEY, name TEXT, dept_id INTEGER REFERENCES departments(dept_id),
            hire_date DATE, salary REAL);
        CREATE TABLE students (
            student_id INTEGER PRIMARY KEY, first_name TEXT, last_name TEXT, gender TEXT,
            birth_date DATE, city TEXT, advisor_id INTEGER REFERENCES teachers(teacher_id));
        CREATE TABLE courses (
            course_id INTEGER PRIMARY KEY, title TEXT, dept_id INTEGER REFERENCES departments(dept_id),
            credits INTEGER, teacher_id INTEGER REFERENCES teachers(teacher_id));
        CREATE TABLE enrollments (
            student_id INTEGER REFERENCES students(student_id),
            course_id INTEGER REFERENCES courses(course_id), semester TEXT, grade REAL,
            PRIMARY KEY (student_id, course_id));
    """)
    departments = [(i, name, building, budget) for i, (name, building, budget) in enumerate(_DEPARTMENTS, 1)]
    _insert(conn, "departments", departments)

    teachers = []
    for teacher_id, (first, last) in enumerate(_unique_people(rng, 20), 1):
        dept = departments[(teacher_id - 1) % len(departments)]
        teachers.append((teacher_id, f"{first} {last}", dept[0], _day(rng, dt.date(1998, 1, 1), 9000).isoformat(),
                         float(rng.randrange(52, 130) * 1000)))
    _insert(conn, "teachers", teachers)

    students = []
    for student_id, (first, last) in enumerate(_unique_people(rng, 90), 1):
        city, _ = rng.choice(CITIES)
        advisor = rng.choice(teachers)[0] if rng.random() > 0.2 else None
        students.append((student_id, first, last, _gender(first), _day(rng, dt.date(1999, 1, 1), 2900).isoformat(),
                         city, advisor))
    _insert(conn, "students", students)

    courses = []
    for dept in departments:
        staff = [t for t in teachers if t[2] == dept[0]]
        for title in _COURSE_TOPICS[dept[1]]:
            courses.append((len(courses) + 1, title, dept[0], rng.choice((3, 4, 4, 5, 6)), rng.choice(staff)[0]))
    _insert(conn, "courses", courses)

    enrollments = []
    for student in students:
        for course in rng.sample(courses, rng.randrange(0, 6)):
            grade = round(rng.uniform(45, 100), 1) if rng.random() > 0.1 else None
            enrollments.append((student[0], course[0], rng.choice(_SEMESTERS), grade))
    _insert(conn, "enrollments", enrollments)


# --- company -------------------------------------------------------------------------------------

_TITLES = ("Engineer", "Engineer", "Engineer", "Analyst", "Designer", "Sales Rep", "Accountant")
_PROJECTS = ("Apollo", "Borealis", "Cascade", "Delta", "Ember", "Fjord", "Granite", "Helix", "Iris", "Juniper")
_ROLES = ("lead", "developer", "developer", "reviewer", "tester")


def build_company(conn: sqlite3.Connection, rng: random.Random) -> None:
    conn.executescript("""
        CREATE TABLE offices (
            office_id INTEGER PRIMARY KEY, city TEXT, country TEXT, opened_year INTEGER);
        CREATE TABLE employees (
            emp_id INTEGER PRIMARY KEY, first_name TEXT, last_name TEXT, title TEXT,
            manager_id INTEGER REFERENCES employees(emp_id),
            office_id INTEGER REFERENCES offices(office_id), hire_date DATE, salary INTEGER,
            phone_ext INTEGER);
        CREATE TABLE projects (
            project_id INTEGER PRIMARY KEY, name TEXT, start_date DATE, end_date DATE, budget REAL);
        CREATE TABLE assignments (
            emp_id INTEGER REFERENCES employees(emp_id),
            project_id INTEGER REFERENCES projects(project_id), role TEXT, hours INTEGER,
            PRIMARY KEY (emp_id, project_id));
    """)
    offices = [(i, city, country, rng.randrange(1995, 2021))
               for i, (city, country) in enumerate(rng.sample(CITIES, 5), 1)]
    _insert(conn, "offices", offices)

    employees: list[tuple] = []
    people = _unique_people(rng, 55)
    for emp_id, (first, last) in enumerate(people, 1):
        if emp_id == 1:
            title, manager = "CEO", None
        elif emp_id <= 6:
            title, manager = "Director", 1
        elif emp_id <= 14:
            title, manager = "Manager", rng.randrange(2, 7)
        else:
            title, manager = rng.choice(_TITLES), rng.randrange(7, 15)
        base = {"CEO": 240, "Director": 160, "Manager": 110}.get(title, 60)
        salary = (base + rng.randrange(0, 40)) * 1000
        # Mostly numeric extensions; a few were typed in with a leading letter, as in old phone lists.
        ext = rng.randrange(100, 400)
        phone_ext: object = f"x{ext}" if rng.random() < 0.1 else ext
        employees.append((emp_id, first, last, title, manager, rng.choice(offices)[0],
                          _day(rng, dt.date(2008, 1, 1), 5500).isoformat(), salary, phone_ext))
    _insert(conn, "employees", employees)

    projects = []
    for project_id, name in enumerate(_PROJECTS, 1):
        start = _day(rng, dt.date(2020, 1, 1), 1300)
        end = (start + dt.timedelta(days=rng.randrange(60, 700))).isoformat() if rng.random() > 0.3 else None
        projects.append((project_id, name, start.isoformat(), end, float(rng.randrange(40, 900) * 1000)))
    _insert(conn, "projects", projects)

    assignments = []
    for employee in employees[6:]:
        for project in rng.sample(projects, rng.randrange(0, 4)):
            assignments.append((employee[0], project[0], rng.choice(_ROLES), rng.randrange(10, 400)))
    _insert(conn, "assignments", assignments)


# --- flights -------------------------------------------------------------------------------------

_AIRPORTS = (
    ("LIS", "Humberto Delgado", "Lisbon", "Portugal", 114), ("OPO", "Francisco Sa Carneiro", "Porto", "Portugal", 69),
    ("MAD", "Adolfo Suarez Barajas", "Madrid", "Spain", 610), ("CDG", "Charles de Gaulle", "Paris", "France", 119),
    ("BER", "Brandenburg", "Berlin", "Germany", 47), ("FCO", "Fiumicino", "Rome", "Italy", 4),
    ("DUB", "Dublin Airport", "Dublin", "Ireland", 74), ("OSL", "Gardermoen", "Oslo", "Norway", 208),
    ("YYZ", "Pearson", "Toronto", "Canada", 173), ("ORD", "O'Hare", "Chicago", "USA", 204),
    ("BOS", "Logan", "Boston", "USA", 6), ("AUS", "Austin-Bergstrom", "Austin", "USA", 165),
)
_AIRLINES = (("Atlantic Wings", "Portugal", 1998), ("Iberia Sky", "Spain", 1985), ("NordAir", "Norway", 2004),
             ("Maple Jet", "Canada", 1990), ("Liberty Lines", "USA", 1972), ("Aer Emerald", "Ireland", 2011))
_SEAT_CLASSES = ("economy", "economy", "economy", "premium", "business")


def build_flights(conn: sqlite3.Connection, rng: random.Random) -> None:
    conn.executescript("""
        CREATE TABLE airports (
            code TEXT PRIMARY KEY, name TEXT, city TEXT, country TEXT, elevation INTEGER);
        CREATE TABLE airlines (
            airline_id INTEGER PRIMARY KEY, name TEXT, country TEXT, founded INTEGER);
        CREATE TABLE flights (
            flight_id INTEGER PRIMARY KEY, airline_id INTEGER REFERENCES airlines(airline_id),
            flight_number TEXT, origin TEXT REFERENCES airports(code),
            destination TEXT REFERENCES airports(code), departure DATETIME, arrival DATETIME,
            gate INTEGER, delay_minutes INTEGER, distance_km INTEGER);
        CREATE TABLE bookings (
            booking_id INTEGER PRIMARY KEY, flight_id INTEGER REFERENCES flights(flight_id),
            passenger_name TEXT, seat_class TEXT, price REAL);
    """)
    _insert(conn, "airports", list(_AIRPORTS))
    airlines = [(i, name, country, founded) for i, (name, country, founded) in enumerate(_AIRLINES, 1)]
    _insert(conn, "airlines", airlines)

    flights = []
    for flight_id in range(1, 181):
        airline = rng.choice(airlines)
        origin, destination = rng.sample(_AIRPORTS, 2)
        distance = 300 + (abs(hash_code(origin[0]) - hash_code(destination[0])) % 6000)
        departure = dt.datetime.combine(_day(rng, dt.date(2024, 3, 1), 120), dt.time(rng.randrange(5, 23), rng.choice((0, 15, 30, 45))))
        arrival = departure + dt.timedelta(minutes=45 + distance // 12)
        # Most gates are numbers; a few terminals name theirs with a letter, stored as text.
        gate: object = rng.randrange(1, 40) if rng.random() > 0.12 else f"{rng.choice('ABC')}{rng.randrange(1, 20)}"
        delay = rng.choice((0, 0, 0, 5, 10, 15, 25, 40, 90)) if rng.random() > 0.1 else None
        flights.append((flight_id, airline[0], f"{airline[1][:2].upper()}{100 + flight_id}", origin[0], destination[0],
                        departure.strftime("%Y-%m-%d %H:%M"), arrival.strftime("%Y-%m-%d %H:%M"), gate, delay, distance))
    _insert(conn, "flights", flights)

    bookings = []
    for booking_id in range(1, 421):
        flight = rng.choice(flights)
        first, last = _person(rng)
        seat = rng.choice(_SEAT_CLASSES)
        factor = {"economy": 0.08, "premium": 0.14, "business": 0.3}[seat]
        bookings.append((booking_id, flight[0], f"{first} {last}", seat, round(40 + flight[9] * factor, 2)))
    _insert(conn, "bookings", bookings)



# --- clinic --------------------------------------------------------------------------------------

_SPECIALTIES = ("Cardiology", "Dermatology", "Pediatrics", "Neurology", "General Practice", "Orthopedics")
_DRUGS = (("Amoxicillin", 500), ("Ibuprofen", 400), ("Metformin", 850), ("Lisinopril", 10),
          ("Atorvastatin", 20), ("Cetirizine", 10), ("Omeprazole", 20), ("Paracetamol", 500))
_APPOINTMENT_STATUSES = ("completed", "completed", "completed", "cancelled", "no-show", "scheduled")
_INSURERS = ("Medicare", "BlueShield", "Allianz", "AXA")


def build_clinic(conn: sqlite3.Connection, rng: random.Random) -> None:
    conn.executescript("""
        CREATE TABLE doctors (
            doctor_id INTEGER PRIMARY KEY, name TEXT, specialty TEXT, years_experience INTEGER);
        CREATE TABLE patients (
            patient_id INTEGER PRIMARY KEY, name TEXT, gender TEXT, birth_date DATE, city TEXT,
            weight REAL, insurance TEXT);
        CREATE TABLE appointments (
            appointment_id INTEGER PRIMARY KEY, patient_id INTEGER REFERENCES patients(patient_id),
            doctor_id INTEGER REFERENCES doctors(doctor_id), scheduled_at DATETIME, status TEXT,
            fee REAL);
        CREATE TABLE prescriptions (
            prescription_id INTEGER PRIMARY KEY,
            appointment_id INTEGER REFERENCES appointments(appointment_id), drug TEXT,
            dose_mg INTEGER, days INTEGER);
    """)
    doctors = []
    for doctor_id, (first, last) in enumerate(_unique_people(rng, 14), 1):
        doctors.append((doctor_id, f"Dr. {first} {last}", _SPECIALTIES[(doctor_id - 1) % len(_SPECIALTIES)],
                        rng.randrange(1, 35)))
    _insert(conn, "doctors", doctors)

    patients = []
    for patient_id, (first, last) in enumerate(_unique_people(rng, 100), 1):
        city, _ = rng.choice(CITIES[:6])
        # Intake forms left some weights blank: stored as '' rather than NULL, as in Spider.
        birth = _day(rng, dt.date(1940, 1, 1), 29000)
        low, high = (14, 45) if birth.year >= 2012 else (48, 115)
        weight: object = round(rng.uniform(low, high), 1) if rng.random() > 0.07 else ""
        insurance = rng.choice(_INSURERS) if rng.random() > 0.25 else None
        patients.append((patient_id, f"{first} {last}", _gender(first), birth.isoformat(), city, weight, insurance))
    _insert(conn, "patients", patients)

    appointments = []
    for appointment_id in range(1, 261):
        when = dt.datetime.combine(_day(rng, dt.date(2023, 1, 2), 600), dt.time(rng.randrange(8, 18), rng.choice((0, 20, 40))))
        doctor = rng.choice(doctors)
        fee = float(rng.choice((60, 80, 80, 120, 150))) if rng.random() > 0.05 else None
        appointments.append((appointment_id, rng.choice(patients)[0], doctor[0], when.strftime("%Y-%m-%d %H:%M"),
                             rng.choice(_APPOINTMENT_STATUSES), fee))
    _insert(conn, "appointments", appointments)

    prescriptions = []
    for appointment in appointments:
        if appointment[4] != "completed":
            continue
        for drug, dose in rng.sample(_DRUGS, rng.randrange(0, 3)):
            prescriptions.append((len(prescriptions) + 1, appointment[0], drug, dose, rng.choice((5, 7, 10, 14, 30, 90))))
    _insert(conn, "prescriptions", prescriptions)


# db_id -> (builder, split its questions belong to). Like Spider, dev and train share no database.
DATABASES: dict[str, tuple[Callable[[sqlite3.Connection, random.Random], None], str]] = {
    "library": (build_library, "train"),
    "retail": (build_retail, "train"),
    "school": (build_school, "train"),
    "company": (build_company, "train"),
    "flights": (build_flights, "dev"),
    "clinic": (build_clinic, "dev"),
}
