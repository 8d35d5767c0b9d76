from email_service.cli import main

main()
