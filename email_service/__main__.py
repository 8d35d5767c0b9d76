from email_service.cli.main import main

if __name__ == "__main__":  # not when a parse process imports it as __mp_main__
    main()
