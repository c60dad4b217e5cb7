"""The demo corpus's questions and gold SQL, per database, written the way Spider's are.

SQLite dialect, Spider's habits (``T1``/``T2`` aliases, lower-case aggregates, grouping by a key
while selecting a name). Together they use every construct the decompiler must handle: inner,
left, comma and self joins; GROUP BY with HAVING (also with the aggregate only in HAVING or only
in ORDER BY); DISTINCT and COUNT(DISTINCT); ORDER BY on aggregates and on columns not selected;
LIMIT and OFFSET; subqueries in WHERE (IN, NOT IN, EXISTS, scalar, correlated), FROM and SELECT;
CTEs; UNION / INTERSECT / EXCEPT; window functions; CASE; CAST; strftime / julianday / date;
substr, ||, upper, lower, instr, length and LIKE; and the three mixed-type columns
(``flights.gate``, ``employees.phone_ext``, ``patients.weight``).
"""

from __future__ import annotations

LIBRARY = [
    ("How many books does the library hold?",
     "SELECT count(*) FROM books"),
    ("List the titles and prices of all poetry books.",
     "SELECT title ,  price FROM books WHERE genre  =  'Poetry'"),
    ("What are the different genres of books?",
     "SELECT DISTINCT genre FROM books"),
    ("How many authors come from each country?",
     "SELECT country ,  count(*) FROM authors GROUP BY country"),
    ("Which genres have more than 15 books?",
     "SELECT genre FROM books GROUP BY genre HAVING count(*)  >  15"),
    ("What are the titles of the five longest books?",
     "SELECT title FROM books ORDER BY pages DESC LIMIT 5"),
    ("Show the title of every book together with the name of its author.",
     "SELECT T1.title ,  T2.name FROM books AS T1 JOIN authors AS T2 ON T1.author_id  =  T2.author_id"),
    ("Which authors have written at least six books?",
     "SELECT T2.name FROM books AS T1 JOIN authors AS T2 ON T1.author_id  =  T2.author_id "
     "GROUP BY T1.author_id HAVING count(*)  >=  6"),
    ("Which members have never borrowed a book?",
     "SELECT name FROM members WHERE member_id NOT IN (SELECT member_id FROM loans)"),
    ("What is the average book price in each genre, from the most to the least expensive genre?",
     "SELECT genre ,  avg(price) FROM books GROUP BY genre ORDER BY avg(price) DESC"),
    ("List every member with the number of loans they have made, including members who made none.",
     "SELECT T1.name ,  count(T2.loan_id) FROM members AS T1 LEFT JOIN loans AS T2 ON T1.member_id  =  T2.member_id "
     "GROUP BY T1.member_id"),
    ("How many loans have not been returned yet?",
     "SELECT count(*) FROM loans WHERE return_date IS NULL"),
    ("For each returned loan, how many days did the member keep the book?",
     "SELECT loan_id ,  julianday(return_date)  -  julianday(loan_date) FROM loans WHERE return_date IS NOT NULL"),
    ("How many loans were made in each year?",
     "SELECT strftime('%Y', loan_date) ,  count(*) FROM loans GROUP BY strftime('%Y', loan_date)"),
    ("Which book titles start with 'The S'?",
     "SELECT title FROM books WHERE title LIKE 'The S%'"),
    ("Show each member's name in capital letters and the city they live in.",
     "SELECT upper(name) ,  city FROM members"),
    ("What are the titles of the books that cost more than the average book?",
     "SELECT title FROM books WHERE price  >  (SELECT avg(price) FROM books)"),
    ("Which authors have written both a mystery and a fantasy book?",
     "SELECT T2.name FROM books AS T1 JOIN authors AS T2 ON T1.author_id  =  T2.author_id WHERE T1.genre  =  'Mystery' "
     "INTERSECT SELECT T2.name FROM books AS T1 JOIN authors AS T2 ON T1.author_id  =  T2.author_id "
     "WHERE T1.genre  =  'Fantasy'"),
    ("Rank the books of each genre by their number of pages, longest first.",
     "SELECT title ,  genre ,  rank() OVER (PARTITION BY genre ORDER BY pages DESC) FROM books"),
    ("What is the total amount of fines each member has paid, largest total first?",
     "SELECT T1.name ,  sum(T2.fine) FROM members AS T1 JOIN loans AS T2 ON T1.member_id  =  T2.member_id "
     "WHERE T2.fine IS NOT NULL GROUP BY T1.member_id ORDER BY sum(T2.fine) DESC"),
    ("Which books have been borrowed by a member who lives in Lisbon?",
     "SELECT title FROM books AS T1 WHERE EXISTS (SELECT * FROM loans AS T2 JOIN members AS T3 "
     "ON T2.member_id  =  T3.member_id WHERE T2.book_id  =  T1.book_id AND T3.city  =  'Lisbon')"),
    ("Label every book as short (under 200 pages), medium (under 500) or long.",
     "SELECT title ,  CASE WHEN pages  <  200 THEN 'short' WHEN pages  <  500 THEN 'medium' ELSE 'long' END FROM books"),
    ("For the first ten loans, what date falls 30 days after the loan date?",
     "SELECT loan_id ,  date(loan_date, '+30 days') FROM loans ORDER BY loan_id LIMIT 10"),
    ("What is the email domain of each member who has an email address?",
     "SELECT name ,  substr(email, instr(email, '@') + 1) FROM members WHERE email IS NOT NULL"),
    ("How many different members have borrowed a science book?",
     "SELECT count(DISTINCT T1.member_id) FROM loans AS T1 JOIN books AS T2 ON T1.book_id  =  T2.book_id "
     "WHERE T2.genre  =  'Science'"),
    ("Which books are the sixth to tenth most expensive, and what do they cost?",
     "SELECT title ,  price FROM books ORDER BY price DESC LIMIT 5 OFFSET 5"),
    ("What is the publication year of the newest book in each genre?",
     "SELECT genre ,  max(published_year) FROM books GROUP BY genre"),
    ("List the titles of books by authors born before 1940, with the author's country.",
     "SELECT T1.title ,  T2.country FROM books AS T1 ,  authors AS T2 "
     "WHERE T1.author_id  =  T2.author_id AND T2.birth_year  <  1940"),
    ("Which members have borrowed more books than the average borrower?",
     "WITH member_loans AS (SELECT member_id ,  count(*) AS n FROM loans GROUP BY member_id) "
     "SELECT T1.name FROM members AS T1 JOIN member_loans AS T2 ON T1.member_id  =  T2.member_id "
     "WHERE T2.n  >  (SELECT avg(n) FROM member_loans)"),
]

RETAIL = [
    ("How many customers are there in each country?",
     "SELECT country ,  count(*) FROM customers GROUP BY country"),
    ("List the names and prices of the tea products, cheapest first.",
     "SELECT name ,  unit_price FROM products WHERE category  =  'Tea' ORDER BY unit_price"),
    ("What is the value of each order, counting quantity, price and discount?",
     "SELECT order_id ,  sum(quantity * unit_price * (1 - discount)) FROM order_items GROUP BY order_id"),
    ("What are the first and last names of customers who placed more than six orders?",
     "SELECT T1.first_name ,  T1.last_name FROM customers AS T1 JOIN orders AS T2 ON T1.customer_id  =  T2.customer_id "
     "GROUP BY T1.customer_id HAVING count(*)  >  6"),
    ("What is the full name of every customer from Canada?",
     "SELECT first_name || ' ' || last_name FROM customers WHERE country  =  'Canada'"),
    ("How many orders were cancelled?",
     "SELECT count(*) FROM orders WHERE status  =  'cancelled'"),
    ("Which discontinued products are still in stock?",
     "SELECT name FROM products WHERE discontinued  =  1 AND stock  >  0"),
    ("What are the three best-selling products by quantity sold?",
     "SELECT T2.name FROM order_items AS T1 JOIN products AS T2 ON T1.product_id  =  T2.product_id "
     "GROUP BY T1.product_id ORDER BY sum(T1.quantity) DESC LIMIT 3"),
    ("How many orders were placed in each month of 2023?",
     "SELECT strftime('%m', order_date) ,  count(*) FROM orders WHERE strftime('%Y', order_date)  =  '2023' "
     "GROUP BY strftime('%m', order_date)"),
    ("What is the average shipping cost for each order status?",
     "SELECT status ,  avg(shipping_cost) FROM orders GROUP BY status"),
    ("Give the ids of customers who live in Paris or have had an order cancelled.",
     "SELECT customer_id FROM customers WHERE city  =  'Paris' UNION SELECT customer_id FROM orders WHERE status  =  'cancelled'"),
    ("Which customers have placed orders but never had one delivered?",
     "SELECT customer_id FROM orders EXCEPT SELECT customer_id FROM orders WHERE status  =  'delivered'"),
    ("For each category, how many products are there and what is the highest price?",
     "SELECT category ,  count(*) ,  max(unit_price) FROM products GROUP BY category"),
    ("Show the ids and dates of the orders placed on a weekend.",
     "SELECT order_id ,  order_date FROM orders WHERE strftime('%w', order_date) IN ('0', '6')"),
    ("Give each customer's email address in lower case and the length of their last name.",
     "SELECT lower(email) ,  length(last_name) FROM customers WHERE email IS NOT NULL"),
    ("Which customers have spent more than 400 in total before discounts, and how much?",
     "SELECT T1.first_name ,  T1.last_name ,  T2.total FROM customers AS T1 JOIN "
     "(SELECT O.customer_id ,  sum(I.quantity * I.unit_price) AS total FROM orders AS O JOIN order_items AS I "
     "ON O.order_id  =  I.order_id GROUP BY O.customer_id) AS T2 ON T1.customer_id  =  T2.customer_id "
     "WHERE T2.total  >  400"),
    ("For every pending order, how many different products does it contain?",
     "SELECT order_id ,  (SELECT count(*) FROM order_items AS T2 WHERE T2.order_id  =  T1.order_id) "
     "FROM orders AS T1 WHERE status  =  'pending'"),
    ("Number each customer's orders from the oldest to the newest.",
     "SELECT customer_id ,  order_id ,  row_number() OVER (PARTITION BY customer_id ORDER BY order_date) FROM orders"),
    ("What is the price of each product in whole units, dropping the cents?",
     "SELECT name ,  CAST(unit_price AS INTEGER) FROM products"),
    ("Which products cost more than the most expensive tea?",
     "SELECT name FROM products WHERE unit_price  >  (SELECT max(unit_price) FROM products WHERE category  =  'Tea')"),
    ("How many different customers have ordered equipment?",
     "SELECT count(DISTINCT T1.customer_id) FROM orders AS T1 JOIN order_items AS T2 ON T1.order_id  =  T2.order_id "
     "JOIN products AS T3 ON T2.product_id  =  T3.product_id WHERE T3.category  =  'Equipment'"),
    ("Which countries have at least five customers? Order them by their number of customers.",
     "SELECT country FROM customers GROUP BY country HAVING count(*)  >=  5 ORDER BY count(*) DESC"),
    ("Which customers have a last name containing 'ss'?",
     "SELECT first_name ,  last_name FROM customers WHERE last_name LIKE '%ss%'"),
    ("What percentage of all orders were delivered?",
     "SELECT CAST(sum(CASE WHEN status  =  'delivered' THEN 1 ELSE 0 END) AS REAL) * 100 / count(*) FROM orders"),
    ("Who placed the most recent order?",
     "SELECT T1.first_name ,  T1.last_name FROM customers AS T1 JOIN orders AS T2 ON T1.customer_id  =  T2.customer_id "
     "ORDER BY T2.order_date DESC LIMIT 1"),
    ("How many days after signing up did each customer place their first order?",
     "SELECT T1.customer_id ,  min(julianday(T2.order_date))  -  julianday(T1.signup_date) FROM customers AS T1 "
     "JOIN orders AS T2 ON T1.customer_id  =  T2.customer_id GROUP BY T1.customer_id"),
    ("Which orders shipped for free, and who placed them?",
     "SELECT T1.order_id ,  T2.first_name ,  T2.last_name FROM orders AS T1 JOIN customers AS T2 "
     "ON T1.customer_id  =  T2.customer_id WHERE T1.shipping_cost  =  0"),
]

SCHOOL = [
    ("How many students are there?",
     "SELECT count(*) FROM students"),
    ("What are the names of the female students from Lisbon?",
     "SELECT first_name ,  last_name FROM students WHERE gender  =  'F' AND city  =  'Lisbon'"),
    ("How many courses does each department offer?",
     "SELECT T2.name ,  count(*) FROM courses AS T1 JOIN departments AS T2 ON T1.dept_id  =  T2.dept_id GROUP BY T2.name"),
    ("Which teachers earn more than 100000? List them from the highest salary down.",
     "SELECT name ,  salary FROM teachers WHERE salary  >  100000 ORDER BY salary DESC"),
    ("List every student with the name of their advisor, if they have one.",
     "SELECT T1.first_name ,  T1.last_name ,  T2.name FROM students AS T1 LEFT JOIN teachers AS T2 "
     "ON T1.advisor_id  =  T2.teacher_id"),
    ("What is the average grade in each course, from the highest average down?",
     "SELECT T2.title ,  avg(T1.grade) FROM enrollments AS T1 JOIN courses AS T2 ON T1.course_id  =  T2.course_id "
     "GROUP BY T1.course_id ORDER BY avg(T1.grade) DESC"),
    ("Which courses have more than 15 students enrolled?",
     "SELECT T2.title FROM enrollments AS T1 JOIN courses AS T2 ON T1.course_id  =  T2.course_id "
     "GROUP BY T1.course_id HAVING count(*)  >  15"),
    ("Which students are not enrolled in any course?",
     "SELECT first_name ,  last_name FROM students WHERE student_id NOT IN (SELECT student_id FROM enrollments)"),
    ("Which students have taken both Databases and Algorithms?",
     "SELECT T1.student_id FROM enrollments AS T1 JOIN courses AS T2 ON T1.course_id  =  T2.course_id "
     "WHERE T2.title  =  'Databases' INTERSECT SELECT T1.student_id FROM enrollments AS T1 JOIN courses AS T2 "
     "ON T1.course_id  =  T2.course_id WHERE T2.title  =  'Algorithms'"),
    ("Which students take a course taught by a teacher from the Physics department?",
     "SELECT DISTINCT T1.first_name ,  T1.last_name FROM students AS T1 JOIN enrollments AS T2 "
     "ON T1.student_id  =  T2.student_id WHERE T2.course_id IN (SELECT course_id FROM courses WHERE teacher_id IN "
     "(SELECT teacher_id FROM teachers WHERE dept_id  =  (SELECT dept_id FROM departments WHERE name  =  'Physics')))"),
    ("How many credits is each student enrolled for in total?",
     "SELECT T1.student_id ,  sum(T2.credits) FROM enrollments AS T1 JOIN courses AS T2 ON T1.course_id  =  T2.course_id "
     "GROUP BY T1.student_id"),
    ("For each department, what is its budget divided by its number of teachers?",
     "SELECT T1.name ,  T1.budget / T2.n FROM departments AS T1 JOIN (SELECT dept_id ,  count(*) AS n FROM teachers "
     "GROUP BY dept_id) AS T2 ON T1.dept_id  =  T2.dept_id"),
    ("Which student got the highest grade in Databases?",
     "SELECT T1.first_name ,  T1.last_name FROM students AS T1 JOIN enrollments AS T2 ON T1.student_id  =  T2.student_id "
     "JOIN courses AS T3 ON T2.course_id  =  T3.course_id WHERE T3.title  =  'Databases' ORDER BY T2.grade DESC LIMIT 1"),
    ("How many students were born in each year?",
     "SELECT strftime('%Y', birth_date) ,  count(*) FROM students GROUP BY strftime('%Y', birth_date)"),
    ("How many whole years had each teacher worked here on the first day of 2025?",
     "SELECT name ,  CAST((julianday('2025-01-01') - julianday(hire_date)) / 365.25 AS INTEGER) FROM teachers"),
    ("What are the initials of every student?",
     "SELECT substr(first_name, 1, 1) || substr(last_name, 1, 1) FROM students"),
    ("For each enrollment, say whether the student passed, failed or is still waiting for a grade.",
     "SELECT student_id ,  course_id ,  CASE WHEN grade  >=  50 THEN 'pass' WHEN grade IS NULL THEN 'pending' "
     "ELSE 'fail' END FROM enrollments"),
    ("Rank the graded students of each course by their grade.",
     "SELECT course_id ,  student_id ,  dense_rank() OVER (PARTITION BY course_id ORDER BY grade DESC) FROM enrollments "
     "WHERE grade IS NOT NULL"),
    ("Which departments have no teacher earning less than 60000?",
     "SELECT name FROM departments EXCEPT SELECT T1.name FROM departments AS T1 JOIN teachers AS T2 "
     "ON T1.dept_id  =  T2.dept_id WHERE T2.salary  <  60000"),
    ("How many different cities do the students come from?",
     "SELECT count(DISTINCT city) FROM students"),
    ("Which teachers advise at least five students, and how many?",
     "SELECT T2.name ,  count(*) FROM students AS T1 JOIN teachers AS T2 ON T1.advisor_id  =  T2.teacher_id "
     "GROUP BY T2.teacher_id HAVING count(*)  >=  5"),
    ("Which departments have an average course grade above the average grade over all enrollments?",
     "WITH dept_grades AS (SELECT T2.dept_id ,  avg(T1.grade) AS avg_grade FROM enrollments AS T1 JOIN courses AS T2 "
     "ON T1.course_id  =  T2.course_id GROUP BY T2.dept_id) SELECT T3.name ,  T4.avg_grade FROM departments AS T3 "
     "JOIN dept_grades AS T4 ON T3.dept_id  =  T4.dept_id WHERE T4.avg_grade  >  (SELECT avg(grade) FROM enrollments)"),
    ("Which students scored above the average grade of a course they took?",
     "SELECT DISTINCT T1.first_name ,  T1.last_name FROM students AS T1 JOIN enrollments AS T2 "
     "ON T1.student_id  =  T2.student_id WHERE T2.grade  >  (SELECT avg(T3.grade) FROM enrollments AS T3 "
     "WHERE T3.course_id  =  T2.course_id)"),
    ("Which courses are third to fifth by credits (ties broken by title)?",
     "SELECT title ,  credits FROM courses ORDER BY credits DESC ,  title LIMIT 3 OFFSET 2"),
    ("In alphabetical order, which buildings house a department with a budget over 400000?",
     "SELECT building FROM departments WHERE budget  >  400000 ORDER BY building"),
    ("In which semester were there the most enrollments?",
     "SELECT semester FROM enrollments GROUP BY semester ORDER BY count(*) DESC LIMIT 1"),
    ("Which students have a last name longer than six letters?",
     "SELECT first_name ,  last_name FROM students WHERE length(last_name)  >  6"),
]

COMPANY = [
    ("How many employees work in each office city?",
     "SELECT T2.city ,  count(*) FROM employees AS T1 JOIN offices AS T2 ON T1.office_id  =  T2.office_id GROUP BY T2.city"),
    ("List every employee with the name of their manager.",
     "SELECT T1.first_name ,  T1.last_name ,  T2.first_name ,  T2.last_name FROM employees AS T1 JOIN employees AS T2 "
     "ON T1.manager_id  =  T2.emp_id"),
    ("Which managers have more than five direct reports?",
     "SELECT T2.first_name ,  T2.last_name FROM employees AS T1 JOIN employees AS T2 ON T1.manager_id  =  T2.emp_id "
     "GROUP BY T2.emp_id HAVING count(*)  >  5"),
    ("Which employees were hired before their manager?",
     "SELECT T1.first_name ,  T1.last_name FROM employees AS T1 JOIN employees AS T2 ON T1.manager_id  =  T2.emp_id "
     "WHERE T1.hire_date  <  T2.hire_date"),
    ("Who is the highest paid employee?",
     "SELECT first_name ,  last_name FROM employees ORDER BY salary DESC LIMIT 1"),
    ("What is the average salary for each job title, highest first?",
     "SELECT title ,  avg(salary) FROM employees GROUP BY title ORDER BY avg(salary) DESC"),
    ("Which employees below director level are not assigned to any project?",
     "SELECT first_name ,  last_name FROM employees WHERE emp_id  >  6 AND emp_id NOT IN (SELECT emp_id FROM assignments)"),
    ("Which projects are still running?",
     "SELECT name FROM projects WHERE end_date IS NULL"),
    ("How many days did each finished project last?",
     "SELECT name ,  julianday(end_date)  -  julianday(start_date) FROM projects WHERE end_date IS NOT NULL"),
    ("Which employees were hired in 2015?",
     "SELECT first_name ,  last_name FROM employees WHERE strftime('%Y', hire_date)  =  '2015'"),
    ("How many hours have been logged on each project, most first?",
     "SELECT T2.name ,  sum(T1.hours) FROM assignments AS T1 JOIN projects AS T2 ON T1.project_id  =  T2.project_id "
     "GROUP BY T2.name ORDER BY sum(T1.hours) DESC"),
    ("Whose phone extension was entered with a leading letter x?",
     "SELECT first_name ,  last_name ,  phone_ext FROM employees WHERE phone_ext LIKE 'x%'"),
    ("Which employees work in a different office from their manager?",
     "SELECT T1.first_name ,  T1.last_name FROM employees AS T1 JOIN employees AS T2 ON T1.manager_id  =  T2.emp_id "
     "WHERE T1.office_id  !=  T2.office_id"),
    ("Which employees work on both the Borealis and the Juniper projects?",
     "SELECT T1.first_name ,  T1.last_name FROM employees AS T1 JOIN assignments AS T2 ON T1.emp_id  =  T2.emp_id "
     "JOIN projects AS T3 ON T2.project_id  =  T3.project_id WHERE T3.name  =  'Borealis' INTERSECT "
     "SELECT T1.first_name ,  T1.last_name FROM employees AS T1 JOIN assignments AS T2 ON T1.emp_id  =  T2.emp_id "
     "JOIN projects AS T3 ON T2.project_id  =  T3.project_id WHERE T3.name  =  'Juniper'"),
    ("Which offices have more employees than the average office?",
     "WITH headcount AS (SELECT office_id ,  count(*) AS staff FROM employees GROUP BY office_id) "
     "SELECT T1.city ,  T2.staff FROM offices AS T1 JOIN headcount AS T2 ON T1.office_id  =  T2.office_id "
     "WHERE T2.staff  >  (SELECT avg(staff) FROM headcount)"),
    ("Rank the employees of each office by salary.",
     "SELECT office_id ,  first_name ,  last_name ,  rank() OVER (PARTITION BY office_id ORDER BY salary DESC) FROM employees"),
    ("How far is each employee's salary from the average salary of their office?",
     "SELECT first_name ,  last_name ,  salary - avg(salary) OVER (PARTITION BY office_id) FROM employees"),
    ("Put every employee in a salary band: under 80000 is 'junior', under 150000 'senior', else 'executive'.",
     "SELECT first_name ,  last_name ,  CASE WHEN salary  <  80000 THEN 'junior' WHEN salary  <  150000 THEN 'senior' "
     "ELSE 'executive' END FROM employees"),
    ("Give the ids of employees who lead a project or are directors.",
     "SELECT emp_id FROM assignments WHERE role  =  'lead' UNION SELECT emp_id FROM employees WHERE title  =  'Director'"),
    ("Which office cities have at least one manager?",
     "SELECT city FROM offices AS T1 WHERE EXISTS (SELECT 1 FROM employees AS T2 WHERE T2.office_id  =  T1.office_id "
     "AND T2.title  =  'Manager')"),
    ("How many different job titles are there?",
     "SELECT count(DISTINCT title) FROM employees"),
    ("Build a company email address for every employee of office 2 from their first and last names.",
     "SELECT lower(first_name) || '.' || lower(last_name) || '@company.example' FROM employees WHERE office_id  =  2"),
    ("Which projects with a budget over 300000 started after 2021?",
     "SELECT name ,  budget FROM projects WHERE budget  >  300000 AND start_date  >  '2021-12-31'"),
    ("In which years were at least four employees hired, and how many?",
     "SELECT strftime('%Y', hire_date) ,  count(*) FROM employees GROUP BY strftime('%Y', hire_date) "
     "HAVING count(*)  >=  4"),
    ("For the offices opened before 2010, how many employees does each have?",
     "SELECT T1.city ,  count(*) FROM offices AS T1 JOIN employees AS T2 ON T1.office_id  =  T2.office_id "
     "WHERE T1.opened_year  <  2010 GROUP BY T1.office_id"),
    ("Which project has the most people assigned to it?",
     "SELECT T2.name FROM assignments AS T1 JOIN projects AS T2 ON T1.project_id  =  T2.project_id "
     "GROUP BY T1.project_id ORDER BY count(*) DESC LIMIT 1"),
    ("Which employees have a first name longer than their last name?",
     "SELECT first_name ,  last_name FROM employees WHERE length(first_name)  >  length(last_name)"),
]

FLIGHTS = [
    ("How many flights are there?",
     "SELECT count(*) FROM flights"),
    ("What are the names and cities of the airports in the USA?",
     "SELECT name ,  city FROM airports WHERE country  =  'USA'"),
    ("How many flights does each airline operate?",
     "SELECT T2.name ,  count(*) FROM flights AS T1 JOIN airlines AS T2 ON T1.airline_id  =  T2.airline_id GROUP BY T2.name"),
    ("Which airports have more than 16 departing flights?",
     "SELECT origin FROM flights GROUP BY origin HAVING count(*)  >  16"),
    ("What are the flight numbers, origins and destinations of the three longest flights?",
     "SELECT flight_number ,  origin ,  destination FROM flights ORDER BY distance_km DESC LIMIT 3"),
    ("What is the average delay of each airline, from the most delayed down?",
     "SELECT T2.name ,  avg(T1.delay_minutes) FROM flights AS T1 JOIN airlines AS T2 ON T1.airline_id  =  T2.airline_id "
     "GROUP BY T1.airline_id ORDER BY avg(T1.delay_minutes) DESC"),
    ("How many flights have no delay recorded?",
     "SELECT count(*) FROM flights WHERE delay_minutes IS NULL"),
    ("What are the numbers of the flights that depart from Lisbon?",
     "SELECT T1.flight_number FROM flights AS T1 JOIN airports AS T2 ON T1.origin  =  T2.code WHERE T2.city  =  'Lisbon'"),
    ("Show each flight number with the city it leaves from and the city it flies to.",
     "SELECT T1.flight_number ,  T2.city ,  T3.city FROM flights AS T1 JOIN airports AS T2 ON T1.origin  =  T2.code "
     "JOIN airports AS T3 ON T1.destination  =  T3.code"),
    ("How many minutes does each flight take, from departure to arrival?",
     "SELECT flight_number ,  CAST(round((julianday(arrival) - julianday(departure)) * 1440) AS INTEGER) FROM flights"),
    ("How many flights depart in each month?",
     "SELECT strftime('%m', departure) ,  count(*) FROM flights GROUP BY strftime('%m', departure)"),
    ("Which flights depart on 15 April 2024?",
     "SELECT flight_number FROM flights WHERE date(departure)  =  '2024-04-15'"),
    ("Which flights leave from gate 12?",
     "SELECT flight_number FROM flights WHERE gate  =  12"),
    ("Which flights board at a gate whose name starts with B?",
     "SELECT flight_number ,  gate FROM flights WHERE gate LIKE 'B%'"),
    ("Who booked business class on a flight that was delayed by more than 30 minutes?",
     "SELECT T1.passenger_name FROM bookings AS T1 JOIN flights AS T2 ON T1.flight_id  =  T2.flight_id "
     "WHERE T1.seat_class  =  'business' AND T2.delay_minutes  >  30"),
    ("How much booking revenue does each seat class bring in?",
     "SELECT seat_class ,  sum(price) FROM bookings GROUP BY seat_class"),
    ("Which airlines have no flights to Dublin?",
     "SELECT name FROM airlines WHERE airline_id NOT IN (SELECT airline_id FROM flights WHERE destination  =  'DUB')"),
    ("Which airports are the origin of a NordAir flight and also the destination of a Maple Jet flight?",
     "SELECT T1.origin FROM flights AS T1 JOIN airlines AS T2 ON T1.airline_id  =  T2.airline_id WHERE T2.name  =  'NordAir' "
     "INTERSECT SELECT T1.destination FROM flights AS T1 JOIN airlines AS T2 ON T1.airline_id  =  T2.airline_id "
     "WHERE T2.name  =  'Maple Jet'"),
    ("Which airports have no departing Atlantic Wings flight?",
     "SELECT code FROM airports EXCEPT SELECT T1.origin FROM flights AS T1 JOIN airlines AS T2 "
     "ON T1.airline_id  =  T2.airline_id WHERE T2.name  =  'Atlantic Wings'"),
    ("Rank each airline's flights by distance, longest first.",
     "SELECT airline_id ,  flight_number ,  rank() OVER (PARTITION BY airline_id ORDER BY distance_km DESC) FROM flights"),
    ("Describe every flight as on time (no delay), late, or unknown when no delay is recorded.",
     "SELECT flight_number ,  CASE WHEN delay_minutes IS NULL THEN 'unknown' WHEN delay_minutes  =  0 THEN 'on time' "
     "ELSE 'late' END FROM flights"),
    ("How many different passengers have booked a flight?",
     "SELECT count(DISTINCT passenger_name) FROM bookings"),
    ("How many bookings does each flight have, including flights without any?",
     "SELECT T1.flight_number ,  count(T2.booking_id) FROM flights AS T1 LEFT JOIN bookings AS T2 "
     "ON T1.flight_id  =  T2.flight_id GROUP BY T1.flight_id"),
    ("Which flights are longer than the average flight?",
     "SELECT flight_number FROM flights WHERE distance_km  >  (SELECT avg(distance_km) FROM flights)"),
    ("Which flights have an average booking price above the average over all bookings?",
     "WITH flight_prices AS (SELECT flight_id ,  avg(price) AS avg_price FROM bookings GROUP BY flight_id) "
     "SELECT T1.flight_number ,  T2.avg_price FROM flights AS T1 JOIN flight_prices AS T2 ON T1.flight_id  =  T2.flight_id "
     "WHERE T2.avg_price  >  (SELECT avg(price) FROM bookings)"),
    ("Which bookings cost more than the average price of their seat class?",
     "SELECT booking_id ,  passenger_name FROM bookings AS T1 WHERE price  >  (SELECT avg(price) FROM bookings AS T2 "
     "WHERE T2.seat_class  =  T1.seat_class)"),
    ("Which airports lie between 100 and 300 metres above sea level?",
     "SELECT name FROM airports WHERE elevation BETWEEN 100 AND 300"),
    ("Give a three-letter upper-case code made from each airline's name, with the name.",
     "SELECT upper(substr(name, 1, 3)) ,  name FROM airlines"),
    ("For each airline, how many flights does it operate? Use the airline name.",
     "SELECT name ,  (SELECT count(*) FROM flights AS T2 WHERE T2.airline_id  =  T1.airline_id) FROM airlines AS T1"),
]

CLINIC = [
    ("How many doctors are there in each specialty?",
     "SELECT specialty ,  count(*) FROM doctors GROUP BY specialty"),
    ("What are the names of the patients without insurance?",
     "SELECT name FROM patients WHERE insurance IS NULL"),
    ("Which patients were born before 1950?",
     "SELECT name ,  birth_date FROM patients WHERE birth_date  <  '1950-01-01'"),
    ("How many appointments has each doctor had, most first?",
     "SELECT T2.name ,  count(*) FROM appointments AS T1 JOIN doctors AS T2 ON T1.doctor_id  =  T2.doctor_id "
     "GROUP BY T1.doctor_id ORDER BY count(*) DESC"),
    ("Which doctors have completed more than 12 appointments?",
     "SELECT T2.name FROM appointments AS T1 JOIN doctors AS T2 ON T1.doctor_id  =  T2.doctor_id "
     "WHERE T1.status  =  'completed' GROUP BY T1.doctor_id HAVING count(*)  >  12"),
    ("What is the average fee for each appointment status?",
     "SELECT status ,  avg(fee) FROM appointments GROUP BY status"),
    ("How much has each doctor charged in fees for completed appointments?",
     "SELECT T2.name ,  sum(T1.fee) FROM appointments AS T1 JOIN doctors AS T2 ON T1.doctor_id  =  T2.doctor_id "
     "WHERE T1.status  =  'completed' GROUP BY T2.name"),
    ("Which drug is prescribed most often?",
     "SELECT drug FROM prescriptions GROUP BY drug ORDER BY count(*) DESC LIMIT 1"),
    ("Which patients have never had an appointment?",
     "SELECT name FROM patients WHERE patient_id NOT IN (SELECT patient_id FROM appointments)"),
    ("Which patients have seen both a cardiologist and a neurologist?",
     "SELECT T1.patient_id FROM appointments AS T1 JOIN doctors AS T2 ON T1.doctor_id  =  T2.doctor_id "
     "WHERE T2.specialty  =  'Cardiology' INTERSECT SELECT T1.patient_id FROM appointments AS T1 JOIN doctors AS T2 "
     "ON T1.doctor_id  =  T2.doctor_id WHERE T2.specialty  =  'Neurology'"),
    ("Which appointments were scheduled in March 2024?",
     "SELECT appointment_id ,  scheduled_at FROM appointments WHERE strftime('%Y-%m', scheduled_at)  =  '2024-03'"),
    ("Roughly how old, in years, was each patient on 1 January 2025?",
     "SELECT name ,  (julianday('2025-01-01') - julianday(birth_date)) / 365.25 FROM patients"),
    ("How many appointments start at each hour of the day?",
     "SELECT strftime('%H', scheduled_at) ,  count(*) FROM appointments GROUP BY strftime('%H', scheduled_at)"),
    ("Which patients have a blank weight on file?",
     "SELECT name FROM patients WHERE weight  =  ''"),
    ("How many prescriptions has each doctor written, including doctors who wrote none?",
     "SELECT T1.name ,  count(T3.prescription_id) FROM doctors AS T1 LEFT JOIN appointments AS T2 "
     "ON T1.doctor_id  =  T2.doctor_id LEFT JOIN prescriptions AS T3 ON T2.appointment_id  =  T3.appointment_id "
     "GROUP BY T1.doctor_id"),
    ("Number each patient's appointments in the order they were scheduled.",
     "SELECT patient_id ,  appointment_id ,  row_number() OVER (PARTITION BY patient_id ORDER BY scheduled_at) "
     "FROM appointments"),
    ("Put each patient in an age group by birth year: 'child' from 2007, 'adult' from 1960, else 'senior'.",
     "SELECT name ,  CASE WHEN birth_date  >=  '2007-01-01' THEN 'child' WHEN birth_date  >=  '1960-01-01' THEN 'adult' "
     "ELSE 'senior' END FROM patients"),
    ("Which patients were prescribed a drug for more than 30 days, and which drug?",
     "SELECT T3.name ,  T1.drug FROM prescriptions AS T1 JOIN appointments AS T2 ON T1.appointment_id  =  T2.appointment_id "
     "JOIN patients AS T3 ON T2.patient_id  =  T3.patient_id WHERE T1.days  >  30"),
    ("Which appointments cost more than the average fee?",
     "SELECT appointment_id ,  fee FROM appointments WHERE fee  >  (SELECT avg(fee) FROM appointments)"),
    ("Which doctors have had at least one appointment cancelled?",
     "SELECT name FROM doctors AS T1 WHERE EXISTS (SELECT * FROM appointments AS T2 WHERE T2.doctor_id  =  T1.doctor_id "
     "AND T2.status  =  'cancelled')"),
    ("Which patients live in Madrid or have seen a pediatrician?",
     "SELECT name FROM patients WHERE city  =  'Madrid' UNION SELECT T3.name FROM appointments AS T1 JOIN doctors AS T2 "
     "ON T1.doctor_id  =  T2.doctor_id JOIN patients AS T3 ON T1.patient_id  =  T3.patient_id "
     "WHERE T2.specialty  =  'Pediatrics'"),
    ("How many different patients has each doctor seen?",
     "SELECT T2.name ,  count(DISTINCT T1.patient_id) FROM appointments AS T1 JOIN doctors AS T2 "
     "ON T1.doctor_id  =  T2.doctor_id GROUP BY T2.name"),
    ("Show the doctors' names without the 'Dr. ' title.",
     "SELECT substr(name, 5) FROM doctors"),
    ("Which drugs have 'in' in their name?",
     "SELECT DISTINCT drug FROM prescriptions WHERE lower(drug) LIKE '%in%'"),
    ("On average, how many appointments does a patient who has appointments have?",
     "SELECT avg(cnt) FROM (SELECT patient_id ,  count(*) AS cnt FROM appointments GROUP BY patient_id)"),
    ("What total amount of each drug has been prescribed (dose times days), largest first?",
     "SELECT drug ,  sum(dose_mg * days) FROM prescriptions GROUP BY drug ORDER BY sum(dose_mg * days) DESC"),
    ("For each appointment still scheduled, what is the date one week later?",
     "SELECT appointment_id ,  date(scheduled_at, '+7 days') FROM appointments WHERE status  =  'scheduled'"),
    ("Which patients are heavier than 100 kilograms?",
     "SELECT name ,  weight FROM patients WHERE weight  >  100 AND weight  !=  ''"),
]

QUESTIONS: dict[str, list[tuple[str, str]]] = {
    "library": LIBRARY,
    "retail": RETAIL,
    "school": SCHOOL,
    "company": COMPANY,
    "flights": FLIGHTS,
    "clinic": CLINIC,
}
